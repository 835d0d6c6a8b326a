-- The reporting views are plain SQL over the attached tables: the planner
-- sees through them.  A lookup by patron reaches every table by its index;
-- a lookup by group or barcode finds the accounts by index, and computes
-- the overdue figures (and the barcodes) as one aggregate over all loans
-- (and cards), since PostgreSQL does not push a join condition into an
-- aggregate; a report that reads neither leaves them out; a whole-view
-- aggregate may run in parallel; a reporting tool sees the columns' types
-- and comments.  And the rows are what the attached tables say, for a
-- patron deleted, a group emptied and a card deactivated.
--
-- It runs in a database of its own, large enough that the planner prefers
-- an index for one row.
\set regress_db :DBNAME
CREATE DATABASE patron_group_reporting_plans;
\c patron_group_reporting_plans
SET client_min_messages = warning;
CREATE EXTENSION patron_group;

CREATE SCHEMA rl;
CREATE TABLE rl.patron (id integer PRIMARY KEY, family_name text NOT NULL, given_name text);
CREATE TABLE rl.card (id serial PRIMARY KEY, patron integer NOT NULL, barcode text NOT NULL UNIQUE,
                      active boolean NOT NULL DEFAULT true);
CREATE INDEX ON rl.card (patron);
CREATE TABLE rl.loan (id serial PRIMARY KEY, patron integer NOT NULL, due timestamptz NOT NULL,
                      returned timestamptz, lost boolean NOT NULL DEFAULT false);
CREATE INDEX ON rl.loan (patron);
CREATE TABLE rl.bill (id serial PRIMARY KEY, patron integer NOT NULL, amount numeric(8,2) NOT NULL);
CREATE INDEX ON rl.bill (patron);
INSERT INTO rl.patron SELECT i, 'Family ' || (i / 4), 'Given ' || i FROM generate_series(1, 8000) i;
INSERT INTO rl.card (patron, barcode, active) SELECT i, 'B' || i, true FROM generate_series(1, 8000) i;
INSERT INTO rl.card (patron, barcode, active) SELECT i, 'A' || i, true FROM generate_series(1, 8000, 7) i;
INSERT INTO rl.card (patron, barcode, active) SELECT i, 'Z' || i, false FROM generate_series(1, 8000, 5) i;
INSERT INTO rl.loan (patron, due, returned, lost)
SELECT 1 + (i * 7919) % 8000, now() + ((i % 30) - 10) * interval '1 day',
       CASE WHEN i % 3 = 0 THEN now() END, i % 97 = 0
  FROM generate_series(1, 40000) i;
INSERT INTO rl.bill (patron, amount) SELECT 1 + (i * 104729) % 8000, (i % 9) + 0.5 FROM generate_series(1, 8000) i;
SELECT patron_group.attach_patrons('rl.patron', name_columns => '{family_name,given_name}');
SELECT patron_group.attach_cards('rl.card', 'patron', 'barcode', active_when => 'active');
SELECT patron_group.attach_circulations('rl.loan', 'patron', 'due', open_when => 'returned IS NULL', lost_when => 'lost');
SELECT patron_group.attach_money('rl.bill', 'charge', 'amount', 'patron');
-- families of four
SELECT count(patron_group.move_to_group(ARRAY[i + 1, i + 2, i + 3]::bigint[], i))
  FROM generate_series(4, 7996, 4) i;
ANALYZE;

-- the nodes of a plan, one per line, without costs
CREATE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE l text;
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP RETURN NEXT l; END LOOP;
END $$;
-- which tables a plan reads by a sequential scan, and which indexes it uses
CREATE FUNCTION scans(q text) RETURNS TABLE (seq_scans text, index_scans text) LANGUAGE sql AS $$
    SELECT string_agg(DISTINCT substring(l FROM 'Seq Scan on (\S+)'), ', '),
           string_agg(DISTINCT COALESCE(substring(l FROM 'Index (?:Only )?Scan(?: Backward)? using (\S+)'),
                                        substring(l FROM 'Bitmap Index Scan on (\S+)')), ', ')
      FROM plan_of(q) l
$$;

-- one patron: index scans only; one group, one barcode: the accounts by index
SELECT * FROM scans('SELECT * FROM patron_group.member_summary WHERE patron_id = 4242');
SELECT * FROM scans('SELECT * FROM patron_group.member_summary WHERE group_id = 100');
SELECT * FROM scans('SELECT * FROM patron_group.member_summary WHERE barcode = ''B4242''');
SELECT * FROM scans('SELECT * FROM patron_group.group_summary WHERE group_id = 100');
SELECT * FROM scans('SELECT * FROM patron_group.membership_history WHERE patron_id = 4242');
-- prepared, with a parameter, as a reporting tool sends it
PREPARE by_patron(bigint) AS SELECT * FROM patron_group.member_summary WHERE patron_id = $1;
SET plan_cache_mode = force_generic_plan;
SELECT * FROM scans('EXECUTE by_patron(4242)');
RESET plan_cache_mode;
-- a report that reads no overdue figure and no barcode does not compute them
SELECT * FROM scans('SELECT count(*) FROM patron_group.member_summary WHERE balance_owed > 5');
-- a whole-view aggregate may run in parallel
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT count(*) > 0 AS parallel FROM plan_of('SELECT count(*), sum(items_overdue) FROM patron_group.member_summary') l
 WHERE l ~ 'Gather';
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- the figures are the attached tables', row by row: a hand-written join of
-- each gives the same (barcode: the greatest active card; overdue: open,
-- not lost, due before now)
CREATE VIEW expected_members AS
SELECT a.patron_id,
       (SELECT max(c.barcode) FROM rl.card c WHERE c.patron = a.patron_id AND c.active) AS barcode,
       concat_ws(', ', p.family_name, NULLIF(concat_ws(' ', p.given_name), '')) AS display_name,
       a.group_id, a.items_out,
       (SELECT count(*) FROM rl.loan l WHERE l.patron = a.patron_id AND l.returned IS NULL
           AND NOT l.lost AND l.due < now()) AS items_overdue,
       a.balance_owed
  FROM patron_group.accounts a LEFT JOIN rl.patron p ON p.id = a.patron_id;
CREATE FUNCTION differ() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM (
        (SELECT patron_id, barcode, display_name, group_id, items_out, items_overdue, balance_owed
           FROM patron_group.member_summary
         EXCEPT ALL SELECT * FROM expected_members)
        UNION ALL
        (SELECT * FROM expected_members
         EXCEPT ALL SELECT patron_id, barcode, display_name, group_id, items_out, items_overdue, balance_owed
           FROM patron_group.member_summary)) d
$$;
CREATE FUNCTION groups_differ() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM patron_group.group_summary s
      FULL JOIN (SELECT g.group_id, g.member_count,
                        (SELECT COALESCE(sum(e.items_overdue), 0) FROM expected_members e
                          WHERE e.group_id = g.group_id) AS items_overdue
                   FROM patron_group.groups g) x USING (group_id)
     WHERE s.member_count IS DISTINCT FROM x.member_count OR s.items_overdue IS DISTINCT FROM x.items_overdue
$$;
SELECT differ(), groups_differ(), (SELECT count(*) FROM patron_group.member_summary) AS members;
-- a card deactivated: the next greatest active card, or none
SELECT barcode FROM patron_group.member_summary WHERE patron_id = 1;
UPDATE rl.card SET active = false WHERE barcode = 'B1';
SELECT barcode FROM patron_group.member_summary WHERE patron_id = 1;
UPDATE rl.card SET active = false WHERE patron = 2;
SELECT patron_id, barcode FROM patron_group.member_summary WHERE patron_id = 2;
-- a patron deleted: gone from the view, their history still there without a name
SELECT patron_group.remove_from_group(7);
DELETE FROM rl.loan WHERE patron = 7;
DELETE FROM rl.card WHERE patron = 7;
DELETE FROM rl.patron WHERE id = 7;
SELECT count(*) AS rows_for_7 FROM patron_group.member_summary WHERE patron_id = 7;
SELECT action, display_name FROM patron_group.membership_history WHERE patron_id = 7 ORDER BY event_id;
-- a group emptied: gone from group_summary
SELECT group_id AS g FROM patron_group.accounts WHERE patron_id = 100 \gset
SELECT patron_group.remove_from_group(patron_id) FROM patron_group.accounts WHERE group_id = :g;
SELECT count(*) AS rows_for_group FROM patron_group.group_summary WHERE group_id = :g;
SELECT differ(), groups_differ();

-- what a reporting tool reads of the views: types and comments
SELECT table_name, count(*) AS columns, count(*) FILTER (WHERE col_description(
           ('patron_group.' || table_name)::regclass, ordinal_position::int) IS NOT NULL) AS documented,
       string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS typed
  FROM information_schema.columns
 WHERE table_schema = 'patron_group' AND table_name IN ('member_summary', 'group_summary', 'membership_history')
 GROUP BY table_name ORDER BY table_name;

\c :regress_db
DROP DATABASE patron_group_reporting_plans;
