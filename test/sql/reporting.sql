-- Reporting views and maintenance: the views and their documentation, what
-- a reporting tool sees in information_schema, health() finding each kind
-- of problem with its fix, detach_all() and the guard on DROP EXTENSION.
\pset null '(null)'

-- detach_all() takes everything off the tables the earlier tests attached
SELECT relid, kind, protected FROM patron_group.attachments ORDER BY relid::oid;
SELECT patron_group.detach_all() AS detached;
SELECT count(*) AS attachments FROM patron_group.attachments;
SELECT count(*) AS triggers FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'lib'::regnamespace AND NOT t.tgisinternal;
SELECT count(*) AS policies FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = 'lib'::regnamespace;
SELECT count(*) AS barcode_indexes FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace = 'lib'::regnamespace AND c.relname LIKE '%pgbarcode%';
SELECT count(*) FILTER (WHERE relrowsecurity) AS tables_with_rls
  FROM pg_class WHERE relnamespace = 'lib'::regnamespace;
-- nothing attached: health says so, the views are empty
SELECT check_name, severity FROM patron_group.health();
SELECT count(*) FROM patron_group.member_summary;

-- A small library: three patrons in a family, one alone, loans and bills.
CREATE SCHEMA rp;
CREATE TABLE rp.patron (id bigint PRIMARY KEY, family text, given text, barcode text);
CREATE TABLE rp.loan (id serial PRIMARY KEY, patron bigint, due timestamptz, returned timestamptz, lost boolean DEFAULT false);
CREATE INDEX ON rp.loan (patron);
CREATE TABLE rp.bill (id serial PRIMARY KEY, patron bigint, amount numeric(8,2), voided boolean DEFAULT false);
CREATE INDEX ON rp.bill (patron);
INSERT INTO rp.patron VALUES (1, 'Ito', 'Aki', 'B001'), (2, 'Ito', 'Ren', 'B002'), (3, 'Ito', 'Yui', 'B003'), (4, 'Berg', 'Lars', 'B004');
INSERT INTO rp.loan (patron, due, returned, lost) VALUES
    (1, now() + interval '7 days', NULL, false),
    (2, now() - interval '3 days', NULL, false),     -- overdue
    (2, now() - interval '30 days', NULL, true),     -- lost: not counted as overdue
    (3, now() - interval '9 days', now(), false),    -- returned
    (4, now() - interval '1 day', NULL, false);      -- overdue, not in a group
INSERT INTO rp.bill (patron, amount, voided) VALUES (1, 2.50, false), (2, 1.00, false), (2, 9.00, true), (4, 3.00, false);
SELECT patron_group.attach_patrons('rp.patron', barcode_column => 'barcode', name_columns => ARRAY['family', 'given']::name[]);
SELECT patron_group.attach_circulations('rp.loan', 'patron', 'due', open_when => 'returned IS NULL', lost_when => 'lost');
SELECT patron_group.attach_money('rp.bill', 'charge', 'amount', 'patron', counts_when => 'NOT voided');
SELECT patron_group.move_to_group(ARRAY[2, 3]::bigint[], 1, reason => 'family') AS ito \gset
SELECT patron_group.set_group_label(:ito, 'Ito family');
SELECT patron_group.set_lead(1);
SELECT patron_group.set_consent(2, 'circulations', true, until => '2099-01-01 00:00:00+00');

SELECT group_id, label, member_count, lead_count, items_out, items_overdue, items_lost,
       amount_billed, amount_paid, balance_owed FROM patron_group.group_summary;
SELECT patron_id, barcode, display_name, group_id, group_label, is_lead, share_circulations,
       share_circulations_until IS NOT NULL AS has_end, circulations_shared_now, share_bills, bills_shared_now,
       items_out, items_overdue, items_lost, amount_billed, amount_paid, balance_owed
  FROM patron_group.member_summary ORDER BY patron_id;
SELECT action, patron_id, barcode, display_name, from_group, from_group_label, to_group, to_group_label, reason, detail
  FROM patron_group.membership_history
 WHERE event_id > (SELECT max(event_id) FROM patron_group.history) - 6
 ORDER BY CASE WHEN action = 'join' THEN patron_id END NULLS LAST, event_id;   -- one move joins in any order
SELECT attached_table, kind, mapping, triggers, policies, row_security, patron_or_barcode_index, missing
  FROM patron_group.attachment_status ORDER BY attached_table::oid;
-- one patron, as a report would ask for it: the view reads only that row's details
SELECT display_name, items_overdue FROM patron_group.member_summary WHERE patron_id = 2;

-- What a reporting tool reading information_schema sees: every view, its
-- columns with sensible types, and a comment on each.
SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns
 WHERE table_schema = 'patron_group'
   AND table_name IN ('group_summary', 'member_summary', 'membership_history', 'attachment_status')
 GROUP BY table_name ORDER BY table_name;
SELECT c.relname, count(*) AS columns, count(col_description(c.oid, a.attnum)) AS documented,
       obj_description(c.oid, 'pg_class') IS NOT NULL AS view_documented,
       c.reloptions
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'patron_group'::regnamespace AND c.relkind = 'v'
 GROUP BY c.oid, c.relname ORDER BY c.relname;

-- healthy
SELECT * FROM patron_group.health();

-- Each problem health() reports, with its fix.
ALTER TABLE rp.loan DISABLE TRIGGER patron_group_totals_insert;
INSERT INTO rp.loan (patron, due) VALUES (3, now() + interval '7 days');   -- not counted
ALTER TABLE rp.loan ENABLE TRIGGER patron_group_totals_insert;
DROP TRIGGER patron_group_totals_truncate ON rp.loan;
DROP INDEX rp.loan_patron_idx;
ALTER TABLE rp.bill DISABLE TRIGGER patron_group_totals_update;
UPDATE patron_group.accounts SET share_bills = true, share_bills_until = '2020-01-01 00:00:00+00' WHERE patron_id = 3;
ALTER TABLE rp.patron DISABLE TRIGGER patron_group_delete;
DELETE FROM rp.patron WHERE id = 4;                                        -- account left behind
ALTER TABLE rp.patron ENABLE TRIGGER patron_group_delete;
ALTER TABLE rp.patron DISABLE TRIGGER patron_group_insert;
INSERT INTO rp.patron VALUES (5, 'Berg', 'Ida', 'B005');                  -- no account
ALTER TABLE rp.patron ENABLE TRIGGER patron_group_insert;
SELECT patron_group.set_lead(1, false);                                    -- a family with no lead
SELECT check_name, severity, subject, detail, fix FROM patron_group.health() ORDER BY check_name, subject, detail;
SELECT attached_table, missing FROM patron_group.attachment_status WHERE missing <> '{}';

-- applying the fixes brings it back to healthy
SELECT patron_group.rebuild(ARRAY[3]::bigint[]) AS repaired;
CREATE INDEX ON rp.loan (patron);
SELECT patron_group.set_consent(3, 'bills', false, reason => 'expired');
DELETE FROM patron_group.accounts WHERE patron_id = 4;
INSERT INTO patron_group.accounts (patron_id) VALUES (5);
SELECT patron_group.set_lead(1);
ALTER TABLE rp.bill ENABLE TRIGGER patron_group_totals_update;
SELECT check_name, subject FROM patron_group.health();
SELECT patron_group.detach('rp.bill');
SELECT patron_group.detach('rp.loan');
SELECT patron_group.attach_circulations('rp.loan', 'patron', 'due', open_when => 'returned IS NULL', lost_when => 'lost');
SELECT patron_group.attach_money('rp.bill', 'charge', 'amount', 'patron', counts_when => 'NOT voided');
SELECT * FROM patron_group.health();
SELECT * FROM patron_group.verify();

-- Rights: the views are security_invoker.  Staff given grant_staff() read
-- them; a role without rights on the underlying tables cannot.
CREATE ROLE regress_report_staff;
CREATE ROLE regress_report_nobody;
SELECT patron_group.grant_staff('regress_report_staff');
GRANT USAGE ON SCHEMA rp TO regress_report_staff;
GRANT SELECT ON ALL TABLES IN SCHEMA rp TO regress_report_staff;
SET ROLE regress_report_staff;
SELECT count(*) AS members FROM patron_group.member_summary;
SELECT group_id, items_overdue FROM patron_group.group_summary;
SELECT count(*) AS findings FROM patron_group.health();
RESET ROLE;
SET ROLE regress_report_nobody;
SELECT count(*) FROM patron_group.member_summary;
SELECT * FROM patron_group.health();
RESET ROLE;
-- staff without SELECT on the patron table cannot read the view: its rights apply
REVOKE SELECT ON rp.patron FROM regress_report_staff;
SET ROLE regress_report_staff;
SELECT display_name FROM patron_group.member_summary WHERE patron_id = 1;
RESET ROLE;
SELECT patron_group.revoke_staff('regress_report_staff');
REVOKE ALL ON ALL TABLES IN SCHEMA rp FROM regress_report_staff;
REVOKE ALL ON SCHEMA rp FROM regress_report_staff;
DROP ROLE regress_report_staff, regress_report_nobody;

-- DROP EXTENSION while tables are attached is refused, CASCADE too, and
-- leaves everything in place
DROP EXTENSION patron_group;
DROP EXTENSION patron_group CASCADE;
SELECT count(*) AS attachments FROM patron_group.attachments;
SELECT count(*) AS still_triggered FROM pg_trigger WHERE tgrelid = 'rp.loan'::regclass AND tgname LIKE 'patron_group%';
-- the reporting views read the attached tables: dropping one with CASCADE
-- (or its schema, or a column a mapping reads) would drop the extension
-- with them, and is refused whole; without CASCADE PostgreSQL refuses
\set VERBOSITY terse
SET client_min_messages = warning;
DROP TABLE rp.loan;
\set VERBOSITY default
DROP TABLE rp.loan CASCADE;
\set VERBOSITY terse
DROP SCHEMA rp CASCADE;
ALTER TABLE rp.loan DROP COLUMN due CASCADE;
DROP VIEW patron_group.loan_map CASCADE;
RESET client_min_messages;
\set VERBOSITY default
SELECT count(*) AS attachments, (SELECT count(*) FROM patron_group.member_summary) AS members,
       to_regclass('rp.loan') IS NOT NULL AS loan_kept
  FROM patron_group.attachments;
-- a money table is not read by the reporting views: CASCADE drops its
-- mapping view and health() says so, as before (in a transaction rolled back)
BEGIN;
DROP TABLE rp.bill CASCADE;
SELECT check_name, severity FROM patron_group.health() ORDER BY 1;
ROLLBACK;
-- other extensions are not concerned
CREATE EXTENSION IF NOT EXISTS plpgsql;
DROP EXTENSION IF EXISTS no_such_extension;
