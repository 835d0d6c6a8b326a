-- The totals written directly (direct.c): the same figures as through SQL,
-- the SQL path taken whenever something else concerns an update of the
-- totals (a trigger, a rule, a CHECK, an index), and the errors an UPDATE
-- would give.  Every step is followed by verify().
--
-- It runs in a database of its own.
\set regress_db :DBNAME
CREATE DATABASE patron_group_direct;
\c patron_group_direct
SET client_min_messages = warning;
CREATE EXTENSION patron_group;
\i test/sql/helpers.psql

CREATE SCHEMA d;
CREATE TABLE d.patron (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE d.loan (id serial PRIMARY KEY, patron int NOT NULL, due timestamptz NOT NULL DEFAULT now() + interval '14 days',
                     returned timestamptz);
CREATE INDEX ON d.loan (patron);
CREATE TABLE d.fine (id serial PRIMARY KEY, patron int NOT NULL, amount numeric(8,2) NOT NULL);
CREATE INDEX ON d.fine (patron);
CREATE TABLE d.payment (id serial PRIMARY KEY, patron int NOT NULL, amount numeric(8,2) NOT NULL);
CREATE INDEX ON d.payment (patron);
INSERT INTO d.patron SELECT i, 'Patron ' || i FROM generate_series(1, 6) i;
SELECT patron_group.attach_patrons('d.patron', name_columns => '{name}');
SELECT patron_group.attach_circulations('d.loan', 'patron', 'due', open_when => 'returned IS NULL');
SELECT patron_group.attach_money('d.fine', 'charge', 'amount', 'patron');
SELECT patron_group.attach_money('d.payment', 'payment', 'amount', 'patron');
SELECT patron_group.move_to_group(ARRAY[2, 3], into_group_of => 1) IS NOT NULL AS grouped;

-- nothing but the figures concerns an update: the totals are written directly
SELECT patron_group.direct_refusal() AS refusal;

-- a checkout, a checkin, a bill and a payment; one statement for several
-- patrons; a loan of someone who is not a patron of the attached table
INSERT INTO d.loan (patron) VALUES (1);
INSERT INTO d.loan (patron) VALUES (2), (2), (3), (4);
UPDATE d.loan SET returned = now() WHERE id = 2;
INSERT INTO d.fine (patron, amount) VALUES (1, 2.50), (4, 1.25);
INSERT INTO d.payment (patron, amount) VALUES (1, 1.00);
INSERT INTO d.loan (patron) VALUES (99);
SELECT patron_id, group_id IS NOT NULL AS grouped, items_out, amount_billed, amount_paid, balance_owed
  FROM patron_group.accounts ORDER BY patron_id;
SELECT member_count, items_out, amount_billed, amount_paid, balance_owed FROM patron_group.groups;
SELECT drift();

-- an audit trigger on an update of accounts: the SQL path, so that it fires
CREATE TABLE d.audit (patron_id bigint, items_out bigint);
CREATE FUNCTION d.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO d.audit VALUES (NEW.patron_id, NEW.items_out);
    RETURN NEW;
END
$$;
CREATE TRIGGER audit AFTER UPDATE ON patron_group.accounts FOR EACH ROW EXECUTE FUNCTION d.audit();
SELECT patron_group.direct_refusal() AS refusal;
SELECT check_name, severity, subject FROM patron_group.health() WHERE check_name = 'totals through SQL';
INSERT INTO d.loan (patron) VALUES (1);
SELECT * FROM d.audit;
SELECT drift();
DROP TRIGGER audit ON patron_group.accounts;
SELECT patron_group.direct_refusal() AS refusal;
INSERT INTO d.loan (patron) VALUES (1);
SELECT count(*) AS audited FROM d.audit;

-- a trigger on an update of other columns than the totals does not concern them
CREATE TRIGGER audit AFTER UPDATE OF is_lead ON patron_group.accounts FOR EACH ROW EXECUTE FUNCTION d.audit();
SELECT patron_group.direct_refusal() AS refusal;
DROP TRIGGER audit ON patron_group.accounts;
-- nor does a disabled one
CREATE TRIGGER audit AFTER UPDATE ON patron_group.groups FOR EACH ROW EXECUTE FUNCTION d.audit();
ALTER TABLE patron_group.groups DISABLE TRIGGER audit;
SELECT patron_group.direct_refusal() AS refusal;
ALTER TABLE patron_group.groups ENABLE TRIGGER audit;
SELECT patron_group.direct_refusal() AS refusal;
DROP TRIGGER audit ON patron_group.groups;

-- a CHECK on a total is enforced: through SQL
ALTER TABLE patron_group.accounts ADD CONSTRAINT at_most_four CHECK (items_out <= 4);
SELECT patron_group.direct_refusal() AS refusal;
SELECT try($$INSERT INTO d.loan (patron) VALUES (1), (1)$$);
SELECT items_out FROM patron_group.accounts WHERE patron_id = 1;
SELECT drift();
ALTER TABLE patron_group.accounts DROP CONSTRAINT at_most_four;
ALTER TABLE patron_group.groups ADD CONSTRAINT owes_little CHECK (balance_owed < 100);
SELECT patron_group.direct_refusal() AS refusal;
ALTER TABLE patron_group.groups DROP CONSTRAINT owes_little;

-- an index on a total, a rule: through SQL
CREATE INDEX accounts_owing ON patron_group.accounts (patron_id) WHERE balance_owed > 0;
SELECT patron_group.direct_refusal() AS refusal;
INSERT INTO d.fine (patron, amount) VALUES (5, 3.00);
SET enable_seqscan = off;
SELECT patron_id FROM patron_group.accounts WHERE balance_owed > 0 ORDER BY 1;
RESET enable_seqscan;
DROP INDEX patron_group.accounts_owing;
CREATE RULE no_notes AS ON UPDATE TO patron_group.groups WHERE NEW.label = 'x' DO INSTEAD NOTHING;
SELECT patron_group.direct_refusal() AS refusal;
DROP RULE no_notes ON patron_group.groups;
SELECT patron_group.direct_refusal() AS refusal;
SELECT drift();

-- a page full of one account's versions: the next ones go elsewhere, with
-- new index entries (not HOT), and both indexes still find the row
BEGIN;
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        INSERT INTO d.loan (patron) VALUES (2);
    END LOOP;
END
$$;
SELECT n_tup_upd > n_tup_hot_upd AS some_not_hot
  FROM pg_stat_xact_user_tables WHERE relid = 'patron_group.accounts'::regclass;
COMMIT;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT patron_id, items_out FROM patron_group.accounts WHERE patron_id = 2;
SELECT count(*) AS members FROM patron_group.accounts WHERE group_id IS NOT NULL;
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT drift();

-- a count that would leave bigint: 22003, and nothing half done
UPDATE patron_group.accounts SET items_out = 9223372036854775807 WHERE patron_id = 6;
SELECT try($$INSERT INTO d.loan (patron) VALUES (6)$$);
SELECT count(*) AS loans_of_6 FROM d.loan WHERE patron = 6;
SELECT patron_group.rebuild(ARRAY[6]::bigint[]) AS rows_fixed;
SELECT drift();

-- the same bulk statements, directly and through SQL, move the totals
-- the same way
CREATE TABLE d.figures (path text, items_out numeric, billed numeric, owed numeric);
INSERT INTO d.figures SELECT 'before', sum(items_out), sum(amount_billed), sum(balance_owed) FROM patron_group.accounts;
INSERT INTO d.loan (patron) SELECT 1 + i % 6 FROM generate_series(1, 60) i;
INSERT INTO d.fine (patron, amount) SELECT 1 + i % 5, 0.10 * i FROM generate_series(1, 30) i;
INSERT INTO d.figures SELECT 'direct', sum(items_out), sum(amount_billed), sum(balance_owed) FROM patron_group.accounts;
SELECT drift();
CREATE TRIGGER audit AFTER UPDATE ON patron_group.accounts FOR EACH ROW EXECUTE FUNCTION d.audit();
INSERT INTO d.loan (patron) SELECT 1 + i % 6 FROM generate_series(1, 60) i;
INSERT INTO d.fine (patron, amount) SELECT 1 + i % 5, 0.10 * i FROM generate_series(1, 30) i;
INSERT INTO d.figures SELECT 'sql', sum(items_out), sum(amount_billed), sum(balance_owed) FROM patron_group.accounts;
DROP TRIGGER audit ON patron_group.accounts;
SELECT drift();
SELECT path, items_out - lag(items_out) OVER w AS items_out, billed - lag(billed) OVER w AS billed,
       owed - lag(owed) OVER w AS owed
  FROM d.figures WINDOW w AS (ORDER BY CASE path WHEN 'before' THEN 0 WHEN 'direct' THEN 1 ELSE 2 END)
 ORDER BY CASE path WHEN 'before' THEN 0 WHEN 'direct' THEN 1 ELSE 2 END;

\c :regress_db
DROP DATABASE patron_group_direct;
