-- alter_attachment(): change how an attached table is read without
-- detaching it.  What is given changes, what is NULL stays; the totals it
-- affects are recounted; a mistake changes nothing.  (That other sessions
-- follow at once is the isolation test alter_attachment.)
--
-- It runs in a database of its own, so that what it attaches leaves the
-- other tests' fixtures alone.
\set regress_db :DBNAME
CREATE DATABASE patron_group_alter;
\c patron_group_alter
SET client_min_messages = warning;
CREATE EXTENSION patron_group;

\i test/sql/helpers.psql

-- how everything is mapped now: the views' definitions and the attachments
CREATE FUNCTION mapping() RETURNS text LANGUAGE sql AS $$
    SELECT md5(string_agg(format('%s:%s:%s:%s:%s:%s:%s:%s', a.relid, a.kind, a.patron_column,
                                 a.barcode_column, a.name_columns, a.via_relid, a.barcode_index,
                                 pg_get_viewdef(a.mapping)), ',' ORDER BY a.relid::oid))
      FROM patron_group.attachments a
$$;

CREATE SCHEMA al;
CREATE TABLE al.patron (id bigint PRIMARY KEY, family text, given text, barcode text, alt_barcode text);
CREATE TABLE al.card (id serial PRIMARY KEY, patron bigint, owner bigint, barcode text, active boolean, expired boolean);
CREATE TABLE al.loan (id serial PRIMARY KEY, patron bigint, due timestamptz, due_back timestamptz,
                      returned timestamptz, status text);
CREATE TABLE al.xact (id bigint PRIMARY KEY, patron bigint, payer bigint);
CREATE TABLE al.bill (id serial PRIMARY KEY, xact bigint, amount numeric, fee numeric, voided boolean, kind text);
INSERT INTO al.patron VALUES (1, 'Okafor', 'Ada', 'P1', 'X1'), (2, 'Okafor', 'Obi', 'P2', 'X2'), (3, 'Lind', 'Eva', 'P3', 'X3');
INSERT INTO al.card (patron, owner, barcode, active, expired) VALUES (1, 2, 'C1', true, true), (2, 1, 'C2', true, false);
INSERT INTO al.loan (patron, due, due_back, returned, status) VALUES
    (1, now() + interval '7 days', now() - interval '1 day', NULL, 'out'),
    (1, now() - interval '2 days', now() + interval '7 days', NULL, 'lost'),
    (2, now() + interval '7 days', now() + interval '7 days', NULL, 'claims returned'),
    (3, now() - interval '3 days', now() - interval '3 days', now(), 'returned');
INSERT INTO al.xact VALUES (10, 1, 3), (20, 2, 2);
INSERT INTO al.bill (xact, amount, fee, voided, kind) VALUES
    (10, 1.00, 0.25, false, 'fine'), (10, 4.00, 0.50, false, 'hold'), (20, 2.00, 0.75, true, 'fine');

SELECT patron_group.attach_patrons('al.patron', barcode_column => 'barcode', name_columns => '{family,given}');
SELECT patron_group.attach_cards('al.card', 'patron', 'barcode', active_when => 'active');
SELECT patron_group.attach_circulations('al.loan', 'patron', 'due', open_when => 'returned IS NULL',
                                        lost_when => 'status = ''lost''');
SELECT patron_group.attach_money('al.bill', 'charge', 'amount', 'xact', via => 'al.xact', counts_when => 'NOT voided');
SELECT patron_group.move_to_group(2, 1);
CREATE ROLE al_opac;
SELECT patron_group.register_patron_facing('al_opac');
SELECT patron_group.protect('al.loan');
SELECT patron_group.protect('al.bill');

CREATE VIEW totals AS
SELECT patron_id, group_id, items_out, items_lost, amount_billed, amount_paid FROM patron_group.accounts;
SELECT * FROM totals ORDER BY patron_id;
SELECT * FROM patron_group.verify();

-- mistakes: a clear error, and nothing changed
SELECT mapping() AS before \gset
SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.alter_attachment(NULL)$$),
    ($$SELECT patron_group.alter_attachment('al.xact')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', barcode_column => 'status')$$),
    ($$SELECT patron_group.alter_attachment('al.patron', open_when => 'true')$$),
    ($$SELECT patron_group.alter_attachment('al.card', counts_when => 'true')$$),
    ($$SELECT patron_group.alter_attachment('al.bill', lost_when => 'true')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', open_when => 'no_such_column IS NULL')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', open_when => 'returned IS NULL; DROP TABLE al.loan')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', lost_when => 'status')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', lost_when => '(SELECT true)')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', due_column => 'status')$$),
    ($$SELECT patron_group.alter_attachment('al.loan', patron_column => 'status')$$),
    ($$SELECT patron_group.alter_attachment('al.patron', name_columns => '{family,nickname}')$$),
    ($$SELECT patron_group.alter_attachment('al.patron', barcode_column => 'nickname')$$),
    ($$SELECT patron_group.alter_attachment('al.card', patron_column => 'barcode')$$),
    ($$SELECT patron_group.alter_attachment('al.bill', amount_column => 'kind')$$),
    ($$SELECT patron_group.alter_attachment('al.bill', via_patron_column => 'nobody')$$),
    ($$SELECT patron_group.alter_attachment('al.bill', via => 'al.patron', via_id_column => 'id', via_patron_column => 'barcode')$$)
) AS t(stmt);
SELECT mapping() = :'before' AS unchanged;
SELECT * FROM totals ORDER BY patron_id;

-- a loan condition: claims returned is not out any more; lost_when changes
SELECT patron_group.alter_attachment('al.loan', open_when => 'returned IS NULL AND status <> ''claims returned''');
SELECT * FROM totals ORDER BY patron_id;
SELECT patron_group.alter_attachment('al.loan', lost_when => 'status IN (''lost'', ''claims returned'')');
SELECT * FROM totals ORDER BY patron_id;
-- the other condition was kept
SELECT pg_get_viewdef('patron_group.loan_map'::regclass) ~ 'claims returned''::text\)' AS open_when_kept;
-- the due column: overdue follows it
SELECT member_id, items_overdue FROM patron_group.group_members(1) ORDER BY member_id NULLS LAST;
SELECT patron_group.alter_attachment('al.loan', due_column => 'due_back');
SELECT member_id, items_overdue FROM patron_group.group_members(1) ORDER BY member_id NULLS LAST;

-- money: what counts, the amount column, and the transaction's patron column
SELECT patron_group.alter_attachment('al.bill', counts_when => 'NOT voided AND kind <> ''hold''');
SELECT * FROM totals ORDER BY patron_id;
SELECT patron_group.alter_attachment('al.bill', amount_column => 'fee');
SELECT * FROM totals ORDER BY patron_id;
SELECT patron_group.alter_attachment('al.bill', via_patron_column => 'payer');
SELECT * FROM totals ORDER BY patron_id;
-- and the triggers count with the new mapping at once
INSERT INTO al.bill (xact, amount, fee, voided, kind) VALUES (10, 9.00, 1.00, false, 'fine'), (20, 9.00, 2.00, false, 'hold');
UPDATE al.xact SET payer = 1 WHERE id = 20;
INSERT INTO al.loan (patron, due, due_back, status) VALUES (3, now(), now() - interval '1 day', 'claims returned');
SELECT * FROM totals ORDER BY patron_id;
SELECT * FROM patron_group.verify();

-- the patron table: names and barcode (the barcode index follows)
SELECT display_name FROM patron_group.group_members(1) ORDER BY member_id NULLS LAST;
SELECT patron_group.alter_attachment('al.patron', name_columns => '{given,family}', barcode_column => 'alt_barcode');
SELECT display_name FROM patron_group.group_members(1) ORDER BY member_id NULLS LAST;
SELECT patron_id, barcode, display_name FROM patron_group.find_patron('x1');
SELECT try($$SELECT patron_group.resolve_barcode('P1')$$);
SELECT indexdef ~ 'alt_barcode' AS index_follows FROM pg_indexes
 WHERE schemaname = 'al' AND tablename = 'patron' AND indexname LIKE '%pgbarcode%';
-- the cards: whose card it is and when it is active
SELECT patron_group.alter_attachment('al.card', patron_column => 'owner', active_when => 'active AND NOT expired');
SELECT try($$SELECT patron_group.resolve_barcode('C1')$$) AS c1_expired;
SELECT patron_group.resolve_barcode('C2') AS c2_owner;

-- protection stays on, over the same trees, through every change
SELECT relid, protected FROM patron_group.attachments WHERE protected ORDER BY relid::oid;
SELECT tablename, count(*) AS policies FROM pg_policies WHERE schemaname = 'al' GROUP BY 1 ORDER BY 1;
-- a bill is visible when its transaction's patron is: the patron column is now payer
SELECT tablename, policyname, qual ~ 'payer' AS by_payer FROM pg_policies
 WHERE schemaname = 'al' AND policyname IN ('patron_group_patron_read', 'patron_group_xact_read') ORDER BY 1, 2;
SELECT * FROM patron_group.health();

-- the history is not concerned (no patron moved), but each backend is told
SELECT action, patron_id FROM patron_group.history ORDER BY event_id;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'patron_group.attachments'::regclass ORDER BY 1;

-- only the owner may change a mapping
CREATE ROLE al_staff;
SELECT patron_group.grant_staff('al_staff');
GRANT USAGE ON SCHEMA al TO al_staff;
SET ROLE al_staff;
SELECT try($$SELECT patron_group.alter_attachment('al.loan', open_when => 'true')$$);
RESET ROLE;
SELECT patron_group.revoke_staff('al_staff');
REVOKE USAGE ON SCHEMA al FROM al_staff;
DROP ROLE al_staff;
SELECT patron_group.unregister_patron_facing('al_opac');
SELECT patron_group.detach_all();
DROP ROLE al_opac;

\c :regress_db
DROP DATABASE patron_group_alter;
