-- Lead access on a tree whose loans table is a child of the transaction
-- table (as Evergreen's action.circulation is of money.billable_xact): a
-- loan is seen under loans consent, its money (the transaction, and the
-- bills that name it) under bills consent, for each of the four
-- combinations of a member's consent.
\set regress_db :DBNAME
CREATE DATABASE patron_group_consent_trees;
\c patron_group_consent_trees
SET client_min_messages = warning;
CREATE EXTENSION patron_group;
CREATE SCHEMA ct;
CREATE TABLE ct.patron (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE ct.xact (id bigint PRIMARY KEY, patron bigint NOT NULL);
CREATE TABLE ct.loan (due timestamptz NOT NULL, returned timestamptz) INHERITS (ct.xact);
ALTER TABLE ct.loan ADD PRIMARY KEY (id);
CREATE TABLE ct.bill (id serial PRIMARY KEY, xact bigint NOT NULL, amount numeric(8,2) NOT NULL);
CREATE INDEX ON ct.xact (patron);
CREATE INDEX ON ct.loan (patron);
CREATE INDEX ON ct.bill (xact);
INSERT INTO ct.patron VALUES (1, 'Lead'), (2, 'Member');
INSERT INTO ct.loan (id, patron, due) VALUES (10, 1, now() + interval '1 week'), (20, 2, now() + interval '1 week');
INSERT INTO ct.xact (id, patron) VALUES (30, 2);          -- a transaction that is no loan
INSERT INTO ct.bill (xact, amount) VALUES (10, 1.00), (20, 2.00), (30, 3.00);
SELECT patron_group.attach_patrons('ct.patron', name_columns => '{name}');
SELECT patron_group.attach_circulations('ct.loan', 'patron', 'due', open_when => 'returned IS NULL');
SELECT patron_group.attach_money('ct.bill', 'charge', 'amount', 'xact', via => 'ct.xact');
SELECT patron_group.move_to_group(2, into_group_of => 1) IS NOT NULL AS grouped;
SELECT patron_group.set_lead(1);
DO $$ BEGIN CREATE ROLE regress_ct_opac; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA ct TO regress_ct_opac;
GRANT SELECT ON ALL TABLES IN SCHEMA ct TO regress_ct_opac;
SELECT patron_group.register_patron_facing('regress_ct_opac');
SELECT patron_group.protect(t) FROM unnest('{ct.patron,ct.loan,ct.bill}'::regclass[]) t;
GRANT EXECUTE ON FUNCTION patron_group.act_as(bigint) TO regress_ct_opac;
-- the read policies: one a table
SELECT tablename, policyname FROM pg_policies
 WHERE schemaname = 'ct' AND policyname LIKE '%\_read' ORDER BY 1, 2;

-- what the lead sees of the member's rows under each combination
CREATE FUNCTION member_rows() RETURNS TABLE (loans bigint, xacts bigint, bills bigint)
LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM ct.loan WHERE patron = 2),
           (SELECT count(*) FROM ct.xact WHERE patron = 2),
           (SELECT count(*) FROM ct.bill b WHERE b.xact IN (20, 30))
$$;
GRANT EXECUTE ON FUNCTION member_rows() TO regress_ct_opac;
CREATE TABLE seen (consent text, loans bigint, xacts bigint, bills bigint);
GRANT INSERT ON seen TO regress_ct_opac;
CREATE PROCEDURE look(consent text) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM patron_group.act_as(1);
    INSERT INTO seen SELECT consent, * FROM member_rows();
END $$;
GRANT EXECUTE ON PROCEDURE look(text) TO regress_ct_opac;

SET ROLE regress_ct_opac;
BEGIN; CALL look('none'); COMMIT;
RESET ROLE;
SELECT patron_group.set_consent(2, 'circulations', true);
SET ROLE regress_ct_opac;
BEGIN; CALL look('loans'); COMMIT;
RESET ROLE;
SELECT patron_group.set_consent(2, 'circulations', false);
SELECT patron_group.set_consent(2, 'bills', true);
SET ROLE regress_ct_opac;
BEGIN; CALL look('bills'); COMMIT;
RESET ROLE;
SELECT patron_group.set_consent(2, 'circulations', true);
SET ROLE regress_ct_opac;
BEGIN; CALL look('both'); COMMIT;
RESET ROLE;
SELECT * FROM seen ORDER BY array_position('{none,loans,bills,both}'::text[], consent);
SELECT * FROM patron_group.verify();

\c :regress_db
DROP DATABASE patron_group_consent_trees;
DROP ROLE regress_ct_opac;
