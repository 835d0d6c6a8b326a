-- What a library system shows of a patron, each as its own figure: the
-- states of an open loan (out, overdue, lost, claims returned, long
-- overdue), renewals that limits let through, patrons the library system
-- deleted, and the library system's own outstanding balance.  Shaped as
-- Evergreen (loans) and Koha (account lines) keep them.  Every change is
-- followed by verify().
--
-- It runs in a database of its own.
\set regress_db :DBNAME
CREATE DATABASE patron_group_states;
\c patron_group_states
SET client_min_messages = warning;
CREATE EXTENSION patron_group;
\i test/sql/helpers.psql

CREATE SCHEMA eg;
CREATE TABLE eg.usr (id serial PRIMARY KEY, family_name text NOT NULL, barcode text,
                     deleted boolean NOT NULL DEFAULT false);
CREATE RULE protect_usr_delete AS ON DELETE TO eg.usr DO INSTEAD
    UPDATE eg.usr SET deleted = true WHERE id = OLD.id;
CREATE TABLE eg.card (id serial PRIMARY KEY, usr integer NOT NULL, barcode text NOT NULL,
                      active boolean NOT NULL DEFAULT true);
CREATE TABLE eg.circulation (id serial PRIMARY KEY, usr integer NOT NULL,
                             due_date timestamptz NOT NULL DEFAULT now() + interval '14 days',
                             checkin_time timestamptz, xact_finish timestamptz, stop_fines text,
                             parent_circ integer);
CREATE INDEX ON eg.circulation (usr);
INSERT INTO eg.usr (family_name) SELECT 'Patron ' || i FROM generate_series(1, 5) i;
INSERT INTO eg.card (usr, barcode) SELECT id, 'C' || id FROM eg.usr;
-- patron 1: one out, one overdue, one lost, one claims returned, one long
-- overdue, one lost but paid off (in no state), one checked in
INSERT INTO eg.circulation (usr, due_date, checkin_time, xact_finish, stop_fines) VALUES
    (1, now() + interval '7 days', NULL, NULL, NULL),
    (1, now() - interval '3 days', NULL, NULL, NULL),
    (1, now() - interval '40 days', NULL, NULL, 'LOST'),
    (1, now() - interval '10 days', NULL, NULL, 'CLAIMSRETURNED'),
    (1, now() - interval '90 days', NULL, NULL, 'LONGOVERDUE'),
    (1, now() - interval '60 days', NULL, now(), 'LOST'),
    (1, now() - interval '5 days', now(), now(), NULL);

SELECT patron_group.attach_patrons('eg.usr', name_columns => '{family_name}', deleted_when => 'deleted');
SELECT patron_group.attach_cards('eg.card', 'usr', 'barcode', active_when => 'active');

-- first as before 1.2: open is every loan not checked in, lost counts as out
SELECT patron_group.attach_circulations('eg.circulation', 'usr', 'due_date',
         open_when => 'checkin_time IS NULL', lost_when => 'stop_fines = ''LOST''');
SELECT patron_id, items_out, items_overdue, items_lost, items_claims_returned, items_long_overdue
  FROM patron_group.member_summary WHERE patron_id = 1;

-- then as Evergreen's staff client counts them: a paid-off lost or long
-- overdue loan is in no state; claims returned and long overdue count as
-- items out, lost does not
SELECT patron_group.alter_attachment('eg.circulation',
         open_when => 'checkin_time IS NULL AND NOT (xact_finish IS NOT NULL AND stop_fines IN (''LOST'', ''LONGOVERDUE''))',
         claims_returned_when => 'stop_fines = ''CLAIMSRETURNED''',
         long_overdue_when => 'stop_fines = ''LONGOVERDUE''',
         renewal_when => 'parent_circ IS NOT NULL',
         out_includes => '{claims_returned,long_overdue}');
SELECT patron_id, items_out, items_overdue, items_lost, items_claims_returned, items_long_overdue
  FROM patron_group.member_summary WHERE patron_id = 1;
-- Evergreen's own figures for the same loans (its ocirccount definition)
SELECT SUM(CASE WHEN due_date >= now() AND (stop_fines IS NULL OR stop_fines NOT IN ('LOST','CLAIMSRETURNED','LONGOVERDUE')) THEN 1 ELSE 0 END) AS out,
       SUM(CASE WHEN due_date < now() AND (stop_fines IS NULL OR stop_fines NOT IN ('LOST','CLAIMSRETURNED','LONGOVERDUE')) THEN 1 ELSE 0 END) AS overdue,
       SUM(CASE WHEN xact_finish IS NULL AND stop_fines = 'LOST' THEN 1 ELSE 0 END) AS lost,
       SUM(CASE WHEN stop_fines = 'CLAIMSRETURNED' THEN 1 ELSE 0 END) AS claims_returned,
       SUM(CASE WHEN xact_finish IS NULL AND stop_fines = 'LONGOVERDUE' THEN 1 ELSE 0 END) AS long_overdue
  FROM eg.circulation WHERE checkin_time IS NULL AND usr = 1;
SELECT drift();

-- the states move as the loan does
UPDATE eg.circulation SET stop_fines = 'CLAIMSRETURNED' WHERE usr = 1 AND stop_fines IS NULL AND due_date < now();
UPDATE eg.circulation SET stop_fines = 'LOST' WHERE usr = 1 AND stop_fines = 'LONGOVERDUE';
SELECT patron_id, items_out, items_overdue, items_lost, items_claims_returned, items_long_overdue
  FROM patron_group.member_summary WHERE patron_id = 1;
SELECT drift();

-- a member's figures follow them into a group, and Group Member Details shows them
SELECT patron_group.move_to_group(1, 2);
SELECT member_id, items_out, items_overdue, items_lost, items_claims_returned, items_long_overdue
  FROM patron_group.group_members(1) ORDER BY member_id NULLS LAST;
SELECT items_out, items_lost, items_claims_returned, items_long_overdue FROM patron_group.group_summary;
SELECT drift();

-- out_includes names known states only
SELECT try($$SELECT patron_group.alter_attachment('eg.circulation', out_includes => '{lost,stolen}')$$);
SELECT try($$SELECT patron_group.alter_attachment('eg.circulation', out_includes => '{NULL}')$$);

-- a renewal closes the loan and opens another: limits never refuse it
SELECT patron_group.set_limits(NULL, max_items_out => 2);
SELECT patron_group.enforce_limits('eg.circulation', true);
SELECT try($$INSERT INTO eg.circulation (usr) VALUES (2)$$) AS checkout;
BEGIN;
UPDATE eg.circulation SET checkin_time = now(), stop_fines = 'RENEW' WHERE id = 1;
INSERT INTO eg.circulation (usr, parent_circ) VALUES (1, 1);
COMMIT;
SELECT items_out FROM patron_group.group_summary;
SELECT drift();

-- a patron the library system deletes leaves the group (lead and consent
-- with it), is recorded, and is found by no barcode
SELECT patron_group.set_lead(2);
SELECT patron_group.set_consent(1, 'bills', true);
SELECT patron_group.resolve_barcode('C1');
DELETE FROM eg.usr WHERE id = 1;
SELECT id, deleted FROM eg.usr WHERE id = 1;
SELECT patron_id, group_id, is_lead, share_bills FROM patron_group.accounts WHERE patron_id IN (1, 2) ORDER BY 1;
SELECT action, patron_id, reason FROM patron_group.history ORDER BY event_id DESC LIMIT 2;
SELECT try($$SELECT patron_group.resolve_barcode('C1')$$);
SELECT try($$SELECT patron_group.move_to_group(1, 3)$$);
-- the lead leaves the same way, set deleted directly
UPDATE eg.usr SET deleted = true WHERE id = 2;
SELECT count(*) AS groups FROM patron_group.groups;
-- and a deleted patron is counted still: their loans are the library's
SELECT patron_id, items_out FROM patron_group.accounts WHERE patron_id = 1;
SELECT drift();
SELECT tgname FROM pg_trigger WHERE tgrelid = 'eg.usr'::regclass ORDER BY 1;

-- Koha: the balance a librarian sees is the sum of amountoutstanding; a
-- partly paid debit that is voided leaves billed and paid as they were
CREATE SCHEMA ko;
CREATE TABLE ko.borrowers (borrowernumber serial PRIMARY KEY, surname text, cardnumber text);
CREATE TABLE ko.accountlines (accountlines_id serial PRIMARY KEY, borrowernumber integer NOT NULL,
                              amount numeric(28,6) NOT NULL, amountoutstanding numeric(28,6) NOT NULL,
                              status text);
CREATE INDEX ON ko.accountlines (borrowernumber);
SELECT patron_group.detach_all();
INSERT INTO ko.borrowers (surname, cardnumber) VALUES ('Amato', 'K1'), ('Bruni', 'K2');
SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', barcode_column => 'cardnumber',
         name_columns => '{surname}');
SELECT patron_group.attach_money('ko.accountlines', 'signed', 'amount', 'borrowernumber',
         counts_when => 'status IS DISTINCT FROM ''VOID''', outstanding_column => 'amountoutstanding');
-- a debit of 10, a payment of 4 against it: 6 outstanding
INSERT INTO ko.accountlines (borrowernumber, amount, amountoutstanding) VALUES (1, 10, 6), (1, -4, 0);
SELECT patron_id, amount_billed, amount_paid, balance_owed FROM patron_group.member_summary ORDER BY 1;
-- the debit is voided: Koha owes nothing; billed drops, the payment stays
UPDATE ko.accountlines SET status = 'VOID', amountoutstanding = 0 WHERE amount = 10;
SELECT patron_id, amount_billed, amount_paid, balance_owed FROM patron_group.member_summary ORDER BY 1;
SELECT sum(amountoutstanding) AS koha_balance FROM ko.accountlines WHERE borrowernumber = 1;
-- an unapplied credit shows as owed below zero, as in Koha
INSERT INTO ko.accountlines (borrowernumber, amount, amountoutstanding) VALUES (2, -3, -3);
SELECT patron_id, balance_owed FROM patron_group.member_summary ORDER BY 1;
SELECT patron_group.move_to_group(2, 1);
SELECT balance_owed FROM patron_group.group_summary;
SELECT drift();
-- without the column, the balance is billed minus paid, as before
SELECT try($$SELECT patron_group.alter_attachment('ko.accountlines', outstanding_column => 'status')$$);
SELECT patron_group.detach('ko.accountlines');
SELECT patron_group.attach_money('ko.accountlines', 'signed', 'amount', 'borrowernumber',
         counts_when => 'status IS DISTINCT FROM ''VOID''');
SELECT patron_id, balance_owed FROM patron_group.member_summary ORDER BY 1;
SELECT drift();

\c :regress_db
DROP DATABASE patron_group_states;
