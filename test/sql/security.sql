-- Lead access with consent, enforced by row-level security: every way a
-- patron-facing role might get more than it may, and that it gets nothing.
SELECT patron_group.detach('ko.accountlines');
SELECT patron_group.detach('ko.issues');
SELECT patron_group.detach('ko.borrowers');

CREATE SCHEMA lib;
CREATE TABLE lib.patron (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE lib.card (id serial PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron, barcode text NOT NULL);
CREATE TABLE lib.loan (id serial PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron,
                       title text NOT NULL, due timestamptz NOT NULL, returned timestamptz);
CREATE TABLE lib.xact (id bigint PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron);
CREATE TABLE lib.bill (id serial PRIMARY KEY, xact bigint NOT NULL REFERENCES lib.xact,
                       amount numeric(8,2) NOT NULL, note text);
CREATE INDEX ON lib.card (patron);
CREATE INDEX ON lib.loan (patron);
CREATE INDEX ON lib.xact (patron);
CREATE INDEX ON lib.bill (xact);
INSERT INTO lib.patron VALUES (1, 'Alvarez, Maria'), (2, 'Alvarez, Sofia'), (3, 'Alvarez, Tomás'), (4, 'Chen, Wei');
INSERT INTO lib.card (patron, barcode) VALUES (1, 'C1'), (2, 'C2'), (3, 'C3'), (4, 'C4');
INSERT INTO lib.loan (patron, title, due) VALUES
    (1, 'Maria''s novel', now() + interval '1 week'), (2, 'Sofia''s comic', now() - interval '1 day'),
    (3, 'Tomás''s medical book', now() + interval '2 weeks'), (4, 'Wei''s atlas', now() + interval '3 days');
INSERT INTO lib.xact VALUES (10, 1), (20, 2), (30, 3), (40, 4);
INSERT INTO lib.bill (xact, amount, note) VALUES (10, 1.00, 'Maria fine'), (20, 0.50, 'Sofia fine'),
    (30, 12.00, 'Tomás fine'), (40, 3.00, 'Wei fine');
SELECT patron_group.attach_patrons('lib.patron', name_columns => '{name}');
SELECT patron_group.attach_cards('lib.card', 'patron', 'barcode');
SELECT patron_group.attach_circulations('lib.loan', 'patron', 'due', open_when => 'returned IS NULL');
SELECT patron_group.attach_money('lib.bill', 'charge', 'amount', 'xact', via => 'lib.xact');

-- the family: Maria leads; Sofia shares her loans; Tomás, an adult, shares nothing
SELECT patron_group.move_to_group(ARRAY[2, 3], into_group_of => 1) IS NOT NULL AS grouped;
SELECT patron_group.set_lead(1);
SELECT patron_group.set_consent(2, 'circulations', true, reason => 'signed form');

CREATE ROLE regress_opac;                  -- the catalogue's patron-facing role
CREATE ROLE regress_auth;                  -- the sign-in service
CREATE ROLE regress_desk;                  -- circulation staff
CREATE ROLE regress_super SUPERUSER;
CREATE ROLE regress_bypass BYPASSRLS;
GRANT USAGE ON SCHEMA lib TO regress_opac, regress_desk;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lib TO regress_opac, regress_desk;
GRANT EXECUTE ON FUNCTION patron_group.issue_token(bigint, interval) TO regress_auth;
SELECT patron_group.grant_staff('regress_desk');

-- roles that would see everything anyway cannot be patron-facing
SELECT try($$SELECT patron_group.register_patron_facing('regress_super')$$);
SELECT try($$SELECT patron_group.register_patron_facing('regress_bypass')$$);
SELECT try($$SELECT patron_group.register_patron_facing(NULL)$$);
SELECT patron_group.register_patron_facing('regress_opac');
SELECT try($$SELECT patron_group.protect('lib.nosuch')$$);
SELECT patron_group.protect(t) FROM unnest('{lib.patron,lib.card,lib.loan,lib.bill}'::regclass[]) t;
SELECT try($$SELECT patron_group.protect('lib.loan')$$);
SELECT c.relname, c.relrowsecurity, p.polname, p.polpermissive, p.polcmd,
       p.polroles::regrole[] AS roles, pg_get_expr(p.polqual, p.polrelid) AS using_
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = 'lib'::regnamespace AND p.polcmd IN ('*', 'r') ORDER BY 1, 3;

-- staff and the library system are unchanged: they see every row
SET ROLE regress_desk;
SELECT count(*) AS loans, (SELECT count(*) FROM lib.bill) AS bills FROM lib.loan;
RESET ROLE;

-- a patron-facing session with no asserted patron sees nothing
SET ROLE regress_opac;
SELECT (SELECT count(*) FROM lib.patron) AS patrons, (SELECT count(*) FROM lib.card) AS cards,
       (SELECT count(*) FROM lib.loan) AS loans, (SELECT count(*) FROM lib.bill) AS bills;
SELECT patron_group.current_patron() IS NULL AS nobody;
SELECT try($$SELECT * FROM patron_group.group_members(1)$$);

-- the identity cannot be set any other way
SELECT try($$SET patron_group.current_patron = 1$$);
SELECT try($$SELECT set_config('patron_group.acting_patron', '1', false)$$);
SELECT try($$RESET patron_group.current_patron$$);
SELECT try($$SELECT patron_group.act_as(1)$$);
SELECT try($$SELECT patron_group.issue_token(1)$$);
SELECT try($$SELECT * FROM patron_group.token_secret$$);
SELECT try($$SELECT * FROM patron_group.accounts$$);
SELECT patron_group.current_patron() IS NULL AS still_nobody;
RESET ROLE;

-- tokens: forged, tampered, for another patron, expired, malformed.  The
-- catalogue gets them from the sign-in service and never sends them: it
-- proves it holds one by answering a nonce of its transaction with
-- HMAC-SHA256(token, nonce).  Here the tokens come from a table, and
-- pgcrypto computes the proof as the catalogue's language would.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE signin (who text PRIMARY KEY, token text);
GRANT SELECT ON signin TO regress_opac;
SET ROLE regress_auth;
SELECT patron_group.issue_token(1) AS maria_token, patron_group.issue_token(4) AS wei_token,
       patron_group.issue_token(3, '1 second') AS short_token \gset
RESET ROLE;
INSERT INTO signin VALUES ('maria', :'maria_token'), ('wei', :'wei_token'), ('short', :'short_token');
CREATE TABLE forged AS SELECT n, t FROM (VALUES
    (1, NULL), (2, ''), (3, 'garbage'), (4, 'pg1.1.9999999999.' || repeat('0', 64)),
    (5, replace(:'wei_token', 'pg1.4.', 'pg1.1.')),              -- Wei's token claiming Maria
    (6, :'maria_token' || '0'), (7, upper(:'maria_token')),
    (8, 'pg2' || substr(:'maria_token', 4)),
    (9, regexp_replace(:'maria_token', '\.(\d+)\.', '.9\1.'))     -- a later expiry, same signature
) AS v(n, t);
GRANT SELECT ON forged TO regress_opac;
-- sign_in(token): what a catalogue does in its transaction: take a nonce,
-- send the patron and expiry the token names and the proof
CREATE FUNCTION sign_in(token text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    nonce text := patron_group.token_nonce();
    patron bigint := CASE WHEN split_part(token, '.', 2) ~ '^\d{1,18}$' THEN split_part(token, '.', 2)::bigint ELSE 0 END;
    expires bigint := CASE WHEN split_part(token, '.', 3) ~ '^\d{1,18}$' THEN split_part(token, '.', 3)::bigint ELSE 0 END;
BEGIN
    RETURN patron_group.act_as_proof(patron, expires, encode(hmac(nonce, token, 'sha256'), 'hex'));
END
$$;
-- try_token(t): sign_in(t), its SQLSTATE and message instead of failing
CREATE FUNCTION try_token(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sign_in(t);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SET ROLE regress_opac;
SELECT n, try_token(t) FROM forged ORDER BY n;
SELECT pg_sleep(1.2);
SELECT try_token(token) FROM signin WHERE who = 'short';
SELECT patron_group.current_patron() IS NULL AS nobody_yet;
-- the token itself is no longer accepted, in the text of a query or not
SELECT try(format('SELECT patron_group.act_as_token(%L)', :'maria_token'));
SELECT try($$SELECT patron_group.act_as_token(token) FROM signin WHERE who = 'maria'$$);
SELECT patron_group.current_patron() IS NULL AS still_nobody;
-- a proof answers one nonce of one transaction, once: pasted into the query
-- text it is worth nothing afterwards
BEGIN;
SELECT patron_group.token_nonce() AS nonce \gset
SELECT encode(hmac(:'nonce', :'maria_token', 'sha256'), 'hex') AS proof,
       split_part(:'maria_token', '.', 3) AS expires \gset
SELECT patron_group.act_as_proof(1, :expires, :'proof');
SELECT try(format('SELECT patron_group.act_as_proof(1, %s, %L)', :expires, :'proof'));  -- spent
COMMIT;
SELECT try(format('SELECT patron_group.act_as_proof(1, %s, %L)', :expires, :'proof'));  -- another transaction
BEGIN;
SELECT patron_group.token_nonce() IS NOT NULL AS new_nonce;
SELECT try(format('SELECT patron_group.act_as_proof(1, %s, %L)', :expires, :'proof'));  -- another nonce
SELECT try(format('SELECT patron_group.act_as_proof(1, %s, %L)', :expires, :'proof'));  -- and that one is spent too
SELECT patron_group.current_patron() IS NULL AS nobody;
COMMIT;
-- the proof is bound to the patron and the expiry the token names
BEGIN;
SELECT patron_group.token_nonce() AS nonce \gset
SELECT try(format('SELECT patron_group.act_as_proof(2, %s, %L)', :expires,
                  encode(hmac(:'nonce', :'maria_token', 'sha256'), 'hex')));
COMMIT;
BEGIN;
SELECT patron_group.token_nonce() AS nonce \gset
SELECT try(format('SELECT patron_group.act_as_proof(1, %s, %L)', :expires + 1,
                  encode(hmac(:'nonce', :'maria_token', 'sha256'), 'hex')));
COMMIT;

-- Maria, signed in: her own rows, Sofia's loans (consent), not Tomás's; bills only hers
BEGIN;
SELECT sign_in(token) FROM signin WHERE who = 'maria';
SELECT patron_group.current_patron();
SELECT patron, title FROM lib.loan ORDER BY patron;
SELECT b.note FROM lib.bill b ORDER BY 1;
SELECT id, name FROM lib.patron ORDER BY id;     -- her own patron row: members' names come
SELECT patron, barcode FROM lib.card ORDER BY 1; -- through group_members(), and only her own card
SELECT display_name, is_lead, barcode, items_out, items_overdue, balance_owed
  FROM patron_group.group_members(1);
SELECT try($$SELECT * FROM patron_group.group_members(2)$$);

-- the index on the patron column is used, the visible set computed once
SET LOCAL enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM lib.loan;

-- writing through a protected table is refused
SELECT try($$INSERT INTO lib.loan (id, patron, title, due) VALUES (999, 1, 'sneaky', now())$$);
UPDATE lib.loan SET title = 'changed' WHERE patron = 1;
DELETE FROM lib.bill;

-- a lead cannot give herself access: consent is the member's
SELECT try($$SELECT patron_group.set_consent(3, 'circulations', true)$$);
SELECT try($$SELECT patron_group.set_consent(2, 'bills', true)$$);
-- the member acting as themselves may (Maria for herself here)
SELECT patron_group.set_consent(1, 'bills', true, reason => 'my choice');

-- COPY out of a query obeys the same rules
COPY (SELECT patron, title FROM lib.loan ORDER BY 1) TO stdout;
COMMIT;
-- and so does COPY out of the table itself
BEGIN;
SELECT sign_in(token) IS NOT NULL AS signed_in FROM signin WHERE who = 'maria';
COPY lib.loan (patron, title) TO stdout;
COMMIT;

-- the identity ended with the transaction: a pooled connection carries nothing
SELECT (SELECT count(*) FROM lib.loan) AS loans_after_commit, patron_group.current_patron() IS NULL AS nobody;
RESET ROLE;
SELECT count(*) AS loans_unchanged FROM lib.loan WHERE title <> 'changed';
SELECT count(*) AS bills_unchanged FROM lib.bill;

-- a leaky function, a view and a SECURITY DEFINER function of the attacker's making
CREATE SCHEMA regress_attacker;
GRANT USAGE, CREATE ON SCHEMA regress_attacker TO regress_opac;
SET ROLE regress_opac;
CREATE FUNCTION regress_attacker.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
    $$ BEGIN RAISE NOTICE 'leaked: %', $1; RETURN true; END $$;
CREATE VIEW regress_attacker.all_loans AS SELECT * FROM lib.loan;
CREATE FUNCTION regress_attacker.all_bills() RETURNS SETOF lib.bill LANGUAGE sql SECURITY DEFINER AS
    $$ SELECT * FROM lib.bill $$;
-- search_path tricks: an operator and a function that shadow the ones the policies use
CREATE FUNCTION regress_attacker.yes(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_attacker.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_attacker.yes);
CREATE FUNCTION regress_attacker.visible_patrons(text) RETURNS bigint[] LANGUAGE sql AS 'SELECT ''{1,2,3,4}''::bigint[]';
SET search_path = regress_attacker, pg_catalog, public;
BEGIN;
SELECT sign_in(token) FROM signin WHERE who = 'wei';
SELECT title FROM lib.loan WHERE regress_attacker.leak(title);
SELECT title FROM regress_attacker.all_loans ORDER BY 1;
SELECT note FROM regress_attacker.all_bills() ORDER BY 1;
SELECT count(*) AS loans_seen FROM lib.loan WHERE patron = 1;
COMMIT;
RESET search_path;
RESET ROLE;

-- consent expires on its own; a lead who loses the flag loses the access
SELECT patron_group.set_consent(3, 'circulations', true, until => now() + interval '1 second');
SET ROLE regress_opac;
BEGIN;
SELECT sign_in(token) IS NOT NULL AS signed_in FROM signin WHERE who = 'maria';
SELECT patron, title FROM lib.loan ORDER BY patron;
COMMIT;
SELECT pg_sleep(1.2);
BEGIN;
SELECT sign_in(token) IS NOT NULL AS signed_in FROM signin WHERE who = 'maria';
SELECT patron, title FROM lib.loan ORDER BY patron;
COMMIT;
RESET ROLE;
SELECT patron_group.set_lead(1, false);
SET ROLE regress_opac;
BEGIN;
SELECT sign_in(token) IS NOT NULL AS signed_in FROM signin WHERE who = 'maria';
SELECT patron, title FROM lib.loan ORDER BY patron;
SELECT display_name FROM patron_group.group_members(1);
COMMIT;
RESET ROLE;

-- a procedure or DO block of a patron-facing session runs in one
-- transaction: a COMMIT inside would hold its loop's rows, read for the
-- patron, past the end of the identity
CREATE PROCEDURE read_after_commit(INOUT seen text DEFAULT '') LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM sign_in(token) FROM signin WHERE who = 'maria';
    FOR r IN SELECT title FROM lib.loan ORDER BY id LOOP
        COMMIT;
        seen := seen || r.title || ' as ' || coalesce(patron_group.current_patron()::text, 'nobody') || '; ';
    END LOOP;
END
$$;
GRANT EXECUTE ON PROCEDURE read_after_commit TO regress_opac;
SET ROLE regress_opac;
CALL read_after_commit();
DO $$ BEGIN PERFORM sign_in(token) FROM signin WHERE who = 'maria'; ROLLBACK; END $$;
SELECT patron_group.current_patron() IS NULL AS nobody;
RESET ROLE;
-- other sessions keep transaction control in procedures
SET ROLE regress_desk;
DO $$ BEGIN COMMIT; END $$;
RESET ROLE;
DROP PROCEDURE read_after_commit;

-- views, materialized views and SECURITY DEFINER functions that read a
-- protected table with their owner's rights: protect() and
-- register_patron_facing() warn, health() reports each with its fix
CREATE VIEW lib.open_loans AS SELECT patron, title FROM lib.loan WHERE returned IS NULL;
CREATE VIEW lib.open_loans_safe WITH (security_invoker) AS SELECT patron, title FROM lib.loan;
CREATE VIEW lib.loan_titles AS SELECT title FROM lib.open_loans;    -- through another view
CREATE MATERIALIZED VIEW lib.bill_totals AS SELECT x.patron, sum(b.amount) AS total
    FROM lib.bill b JOIN lib.xact x ON x.id = b.xact GROUP BY x.patron;
CREATE FUNCTION lib.bills_of(bigint) RETURNS SETOF numeric LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS $$ SELECT amount FROM lib.bill b JOIN lib.xact x ON x.id = b.xact WHERE x.patron = $1 $$;
CREATE FUNCTION lib.harmless() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
ALTER VIEW lib.open_loans OWNER TO regress_desk;
ALTER VIEW lib.loan_titles OWNER TO regress_desk;
ALTER MATERIALIZED VIEW lib.bill_totals OWNER TO regress_desk;
ALTER FUNCTION lib.bills_of(bigint) OWNER TO regress_desk;
GRANT SELECT ON lib.open_loans, lib.open_loans_safe, lib.loan_titles, lib.bill_totals TO regress_opac;
SELECT patron_group.register_patron_facing('regress_opac');
SELECT check_name, severity, subject, detail, fix FROM patron_group.health()
 WHERE check_name = 'read around protection' ORDER BY subject, detail;
SET ROLE regress_opac;
BEGIN;
SELECT sign_in(token) FROM signin WHERE who = 'wei';
SELECT count(*) AS loans_through_view FROM lib.open_loans;          -- what the check is about
SELECT count(*) AS loans_through_invoker_view FROM lib.open_loans_safe;
COMMIT;
RESET ROLE;
ALTER VIEW lib.open_loans SET (security_invoker = true);
ALTER VIEW lib.loan_titles SET (security_invoker = on);
REVOKE SELECT ON lib.bill_totals FROM regress_opac;
REVOKE EXECUTE ON FUNCTION lib.bills_of(bigint) FROM PUBLIC;
SELECT count(*) AS exposures_left FROM patron_group.health() WHERE check_name = 'read around protection';
DROP VIEW lib.loan_titles, lib.open_loans, lib.open_loans_safe;
DROP MATERIALIZED VIEW lib.bill_totals;
DROP FUNCTION lib.bills_of(bigint), lib.harmless();

-- leaving the group clears consent; every change is in the history
SELECT patron_group.remove_from_group(2);
SELECT share_circulations, share_bills, share_circulations_until FROM patron_group.accounts WHERE patron_id = 2;
SELECT action, patron_id, detail IS NOT NULL AS has_detail, regexp_replace(detail, ' until .*', ' until ...') AS detail, reason
  FROM patron_group.history WHERE action LIKE 'consent%' ORDER BY event_id;

-- a patron-facing role that owns an attached table is refused
CREATE TABLE lib.owned (id bigint PRIMARY KEY, patron bigint, due timestamptz);
ALTER TABLE lib.owned OWNER TO regress_opac;
SELECT patron_group.attach_circulations('lib.owned', 'patron', 'due');
SELECT try($$SELECT patron_group.protect('lib.owned')$$);
SELECT patron_group.detach('lib.owned');
DROP TABLE lib.owned;

-- unprotect and unregister undo it all
SELECT patron_group.unprotect(t) FROM unnest('{lib.patron,lib.card,lib.loan,lib.bill}'::regclass[]) t;
SELECT count(p.oid) AS policies, bool_or(relrowsecurity) AS rls
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relnamespace = 'lib'::regnamespace;
SELECT patron_group.unregister_patron_facing('regress_opac');
SELECT try($$SELECT patron_group.unregister_patron_facing('regress_opac')$$);
SELECT patron_group.rotate_token_secret();
SET ROLE regress_opac;
SELECT try_token(token) FROM signin WHERE who = 'maria';  -- old tokens die with the secret
RESET ROLE;

DROP SCHEMA regress_attacker CASCADE;
DROP TABLE signin, forged;
DROP FUNCTION try_token(text), sign_in(text);
DROP EXTENSION pgcrypto;
SELECT patron_group.revoke_staff('regress_desk');
REVOKE ALL ON ALL TABLES IN SCHEMA lib FROM regress_opac, regress_desk;
REVOKE ALL ON SCHEMA lib FROM regress_opac, regress_desk;
REVOKE ALL ON FUNCTION patron_group.issue_token(bigint, interval) FROM regress_auth;
DROP ROLE regress_opac, regress_auth, regress_desk, regress_super, regress_bypass;
