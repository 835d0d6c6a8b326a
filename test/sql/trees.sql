-- Inheritance and partition trees: attaching a table covers its children
-- and partitions, whichever table of the tree a statement names; the
-- transaction table's tree moves and drops money; a statement on a table
-- above an attached tree recounts the patrons it touched; tables that join
-- or leave a tree later follow.  Shaped as Evergreen's money and action
-- schemas are.  Every statement is followed by verify().
--
-- It runs in a database of its own.
\set regress_db :DBNAME
CREATE DATABASE patron_group_trees;
\c patron_group_trees
SET client_min_messages = warning;
CREATE EXTENSION patron_group;

CREATE SCHEMA eg;
CREATE TABLE eg.usr (id serial PRIMARY KEY, family_name text, barcode text);
-- every transaction lives in a child; the parent holds none (but may)
CREATE TABLE eg.billable_xact (id bigserial PRIMARY KEY, usr integer NOT NULL,
                               xact_start timestamptz DEFAULT now(), xact_finish timestamptz);
CREATE TABLE eg.circulation (due_date timestamptz NOT NULL DEFAULT now() + interval '14 days',
                             checkin_time timestamptz, stop_fines text) INHERITS (eg.billable_xact);
CREATE TABLE eg.grocery (note text) INHERITS (eg.billable_xact);
CREATE TABLE eg.billing (id serial PRIMARY KEY, xact bigint NOT NULL, amount numeric(8,2) NOT NULL,
                         voided boolean NOT NULL DEFAULT false);
-- payments in a deep tree, voided through the parent or a view's rule
CREATE TABLE eg.payment (id serial PRIMARY KEY, xact bigint NOT NULL, amount numeric(8,2) NOT NULL,
                         voided boolean NOT NULL DEFAULT false);
CREATE TABLE eg.bnm_payment (accepting_usr integer) INHERITS (eg.payment);
CREATE TABLE eg.cash_payment () INHERITS (eg.bnm_payment);
CREATE TABLE eg.forgive_payment () INHERITS (eg.bnm_payment);
CREATE VIEW eg.payment_view AS
  SELECT p.*, c.relname AS payment_type FROM eg.payment p JOIN pg_class c ON c.oid = p.tableoid;
CREATE RULE payment_view_update AS ON UPDATE TO eg.payment_view DO INSTEAD
  UPDATE eg.payment SET voided = NEW.voided, amount = NEW.amount WHERE id = OLD.id;
CREATE INDEX ON eg.circulation (usr);
CREATE INDEX ON eg.billing (xact);
CREATE INDEX ON eg.payment (xact);

INSERT INTO eg.usr (family_name, barcode) SELECT 'Patron ' || i, 'B' || i FROM generate_series(1, 6) i;
INSERT INTO eg.circulation (usr) VALUES (1), (2), (3);
INSERT INTO eg.grocery (usr, note) VALUES (3, 'printing');
INSERT INTO eg.billing (xact, amount) SELECT id, 1.00 FROM eg.billable_xact;
INSERT INTO eg.cash_payment (xact, amount) VALUES (1, 0.50);

SELECT patron_group.attach_patrons('eg.usr', barcode_column => 'barcode', name_columns => '{family_name}');
SELECT patron_group.attach_circulations('eg.circulation', 'usr', 'due_date',
         open_when => 'checkin_time IS NULL', lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('eg.billing', 'charge', 'amount', 'xact', via => 'eg.billable_xact',
         via_id_column => 'id', via_patron_column => 'usr', counts_when => 'NOT voided');
SELECT patron_group.attach_money('eg.payment', 'payment', 'amount', 'xact', via => 'eg.billable_xact',
         via_id_column => 'id', via_patron_column => 'usr', counts_when => 'NOT voided');

-- the triggers each table got: the trees of the attached tables and of the
-- transaction table, and the table above action.circulation
SELECT on_table, string_agg(trigger_name, ', ' ORDER BY trigger_name) AS triggers
  FROM patron_group.expected_triggers() GROUP BY on_table ORDER BY on_table::text;
SELECT count(*) AS missing FROM patron_group.expected_triggers() e
 WHERE NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = e.on_table AND t.tgname = e.trigger_name);

CREATE VIEW totals AS
SELECT patron_id, items_out, items_lost, amount_billed, amount_paid FROM patron_group.accounts
 WHERE items_out <> 0 OR items_lost <> 0 OR amount_billed <> 0 OR amount_paid <> 0;
CREATE FUNCTION drift() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM patron_group.verify() $$;
SELECT * FROM totals ORDER BY 1;
SELECT drift();

-- payments into every table of the tree, the parent's own rows included
INSERT INTO eg.cash_payment (xact, amount) VALUES (2, 0.25);
INSERT INTO eg.forgive_payment (xact, amount) VALUES (3, 1.00);
INSERT INTO eg.bnm_payment (xact, amount) VALUES (4, 0.10);
INSERT INTO eg.payment (xact, amount) VALUES (4, 0.20);
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- voids through the parent, a middle table and the view's rule
UPDATE eg.payment SET voided = true WHERE id = 1;
UPDATE eg.bnm_payment SET amount = 0.30 WHERE xact = 2;
UPDATE eg.payment_view SET voided = true WHERE payment_type = 'forgive_payment';
SELECT * FROM totals ORDER BY 1;
SELECT drift();
DELETE FROM eg.payment WHERE xact = 4;
SELECT drift();

-- loans and bills through the children and the parent
INSERT INTO eg.circulation (usr, stop_fines) VALUES (4, 'LOST'), (5, NULL);
INSERT INTO eg.billing (xact, amount) SELECT id, 2.00 FROM eg.circulation WHERE usr IN (4, 5);
UPDATE eg.circulation SET checkin_time = now() WHERE usr = 5;
SELECT * FROM totals ORDER BY 1;
SELECT drift();

-- a merge as Evergreen writes it: one UPDATE of the parent moves the
-- circulations and the groceries of 3 to 2, loans and money together
UPDATE eg.billable_xact SET usr = 2 WHERE usr = 3;
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- and one written child by child
UPDATE eg.circulation SET usr = 1 WHERE usr = 2;
UPDATE eg.grocery SET usr = 1 WHERE usr = 2;
SELECT * FROM totals ORDER BY 1;
SELECT drift();

-- a transaction deleted through its child, and a purge through the parent:
-- their bills and payments stay behind and count for nobody
DELETE FROM eg.grocery WHERE usr = 1;
SELECT drift();
DELETE FROM eg.billable_xact WHERE usr = 4;
SELECT * FROM totals ORDER BY 1;
SELECT drift();
SELECT count(*) AS orphan_bills FROM eg.billing b WHERE NOT EXISTS (SELECT FROM eg.billable_xact x WHERE x.id = b.xact);
TRUNCATE eg.grocery;
SELECT drift();

-- a table that joins the transaction tree later gets its triggers at once
CREATE TABLE eg.reservation (start_time timestamptz) INHERITS (eg.billable_xact);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'eg.reservation'::regclass ORDER BY 1;
INSERT INTO eg.reservation (usr) VALUES (6);
INSERT INTO eg.billing (xact, amount) SELECT id, 3.00 FROM eg.reservation;
UPDATE eg.reservation SET usr = 5;
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- and loses them when it leaves, its money no longer counted
ALTER TABLE eg.reservation NO INHERIT eg.billable_xact;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'eg.reservation'::regclass;
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- a table that joins it with rows: they count at once
ALTER TABLE eg.reservation INHERIT eg.billable_xact;
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- a new payment child: its payments count
CREATE TABLE eg.work_payment () INHERITS (eg.bnm_payment);
INSERT INTO eg.work_payment (xact, amount) SELECT id, 1.50 FROM eg.reservation;
SELECT drift();
-- a child dropped with its rows: they no longer count
DROP TABLE eg.work_payment;
SELECT * FROM totals ORDER BY 1;
SELECT drift();

-- a child of an attached table, or its parent, cannot be attached as well
SELECT patron_group.attach_money('eg.cash_payment', 'payment', 'amount', 'xact', via => 'eg.billable_xact');

-- a partitioned loans table, and partitions that come and go
CREATE SCHEMA pt;
CREATE TABLE pt.loan (id bigserial, patron integer NOT NULL,
                      due timestamptz NOT NULL DEFAULT now() + interval '7 days',
                      returned timestamptz, branch text NOT NULL) PARTITION BY LIST (branch);
CREATE TABLE pt.loan_main PARTITION OF pt.loan FOR VALUES IN ('main');
INSERT INTO pt.loan (patron, branch) VALUES (1, 'main'), (2, 'main');
SELECT patron_group.attach_circulations('pt.loan', 'patron', 'due', open_when => 'returned IS NULL');
CREATE TABLE pt.loan_east PARTITION OF pt.loan FOR VALUES IN ('east');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pt.loan_east'::regclass ORDER BY 1;
INSERT INTO pt.loan (patron, branch) VALUES (3, 'east');
INSERT INTO pt.loan_east (patron, branch) VALUES (3, 'east');
UPDATE pt.loan SET branch = 'east' WHERE patron = 1;
UPDATE pt.loan_east SET returned = now() WHERE patron = 3 AND id = (SELECT min(id) FROM pt.loan WHERE patron = 3);
SELECT * FROM totals ORDER BY 1;
SELECT drift();
-- a partition attached with its rows, then detached, then dropped
CREATE TABLE pt.loan_west (LIKE pt.loan INCLUDING DEFAULTS);
INSERT INTO pt.loan_west (patron, due, branch) VALUES (6, now(), 'west'), (6, now(), 'west');
ALTER TABLE pt.loan ATTACH PARTITION pt.loan_west FOR VALUES IN ('west');
SELECT * FROM totals WHERE patron_id = 6;
SELECT drift();
ALTER TABLE pt.loan DETACH PARTITION pt.loan_west;
SELECT * FROM totals WHERE patron_id = 6;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'pt.loan_west'::regclass;
SELECT drift();
DROP TABLE pt.loan_east;
SELECT * FROM totals ORDER BY 1;
SELECT drift();

SELECT * FROM patron_group.health();

-- detaching takes every trigger off every table of every tree
SELECT patron_group.detach_all();
SELECT count(*) AS triggers_left FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
  JOIN pg_class c ON c.oid = t.tgrelid
 WHERE p.pronamespace = 'patron_group'::regnamespace AND c.relnamespace <> 'patron_group'::regnamespace;

\c :regress_db
DROP DATABASE patron_group_trees;
