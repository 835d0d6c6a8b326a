-- Fixture of test/t/030_attacks.pl: an Evergreen-shaped library system owned
-- by a non-superuser (ils_owner), attached and protected by the superuser
-- DBA, with a family (lead L 500001, member M1 500002 who shares circulations
-- and bills, adult member M2 500003 who shares nothing), an outsider O
-- (500004) and spare patrons.  Run by the bootstrap superuser in a fresh
-- database; the roles exist already (they are global).

CREATE EXTENSION patron_group;

-- where an attacker's payload records that it ran, and as whom: one table
-- per attacker, owned by that attacker, writable by anyone (so that a
-- payload running as some other role can still record itself)
CREATE SCHEMA evidence;
GRANT USAGE ON SCHEMA evidence TO PUBLIC;
-- one numbering for every log, so that "rows since the last check" is one number
CREATE SEQUENCE evidence.seq;
GRANT USAGE ON SEQUENCE evidence.seq TO PUBLIC;
CREATE FUNCTION evidence.make_log(tab name, attacker name) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE evidence.%I (
                        id bigint PRIMARY KEY DEFAULT nextval(''evidence.seq''),
                        planted_by name NOT NULL,
                        ran_as name NOT NULL,
                        ran_as_super boolean NOT NULL,
                        session_role name NOT NULL DEFAULT session_user,
                        at timestamptz NOT NULL DEFAULT clock_timestamp())', tab);
    EXECUTE format('ALTER TABLE evidence.%I OWNER TO %I', tab, attacker);
    EXECUTE format('GRANT INSERT ON evidence.%I TO PUBLIC', tab);
END $$;
SELECT evidence.make_log('log_' || r, r) FROM unnest('{ils_owner,staff,opac,signer}'::name[]) r;
-- payloads a DBA session plants in its own pg_temp (see the test)
SELECT evidence.make_log('log_dba', current_user);
CREATE VIEW evidence.all_rows AS
              SELECT 'ils_owner'::text AS log, * FROM evidence.log_ils_owner
    UNION ALL SELECT 'staff', * FROM evidence.log_staff
    UNION ALL SELECT 'opac', * FROM evidence.log_opac
    UNION ALL SELECT 'signer', * FROM evidence.log_signer
    UNION ALL SELECT 'dba', * FROM evidence.log_dba;

-- the library system, owned by ils_owner
CREATE SCHEMA ils AUTHORIZATION ils_owner;
SET ROLE ils_owner;
CREATE TABLE ils.patron (
    id          bigint PRIMARY KEY,
    family_name text NOT NULL,
    given_name  text,
    street      text,
    city        text,
    email       text,
    phone       text,
    dob         date
);
CREATE TABLE ils.card (
    id      serial PRIMARY KEY,
    patron  bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    barcode text NOT NULL,
    active  boolean NOT NULL DEFAULT true
);
CREATE TABLE ils.loan (
    id         serial PRIMARY KEY,
    patron     bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    title      text NOT NULL,
    due        timestamptz NOT NULL,
    returned   timestamptz,
    stop_fines text
);
CREATE TABLE ils.xact (
    id     bigint PRIMARY KEY,
    patron bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    kind   text NOT NULL DEFAULT 'grocery'
);
CREATE TABLE ils.bill (
    id     serial PRIMARY KEY,
    xact   bigint NOT NULL REFERENCES ils.xact ON DELETE CASCADE,
    amount numeric(8,2) NOT NULL,
    voided boolean NOT NULL DEFAULT false,
    note   text
);
-- Evergreen's money.payment: a parent whose children hold most rows
CREATE TABLE ils.payment (
    id     serial PRIMARY KEY,
    xact   bigint NOT NULL,
    amount numeric(8,2) NOT NULL,
    voided boolean NOT NULL DEFAULT false
);
CREATE TABLE ils.cash_payment (cash_drawer integer) INHERITS (ils.payment);
CREATE TABLE ils.card_payment (cc_last4 text) INHERITS (ils.payment);
-- inter-library loans, partitioned by due date; no foreign key, so that a
-- loan may name a patron registered later
CREATE TABLE ils.ill_loan (
    id         serial,
    patron     bigint NOT NULL,
    lender     text NOT NULL,
    due        timestamptz NOT NULL,
    returned   timestamptz,
    stop_fines text
) PARTITION BY RANGE (due);
CREATE TABLE ils.ill_loan_2020s PARTITION OF ils.ill_loan
    FOR VALUES FROM ('2020-01-01') TO ('2040-01-01');

CREATE INDEX ON ils.card (patron);
CREATE INDEX ON ils.loan (patron);
CREATE INDEX ON ils.xact (patron);
CREATE INDEX ON ils.bill (xact);
CREATE INDEX ON ils.payment (xact);
CREATE INDEX ON ils.cash_payment (xact);
CREATE INDEX ON ils.card_payment (xact);
CREATE INDEX ON ils.ill_loan (patron);

-- 500001 L, the lead; 500002 M1, a member who shares; 500003 M2, an adult member
-- who shares nothing; 500004 O, an outsider; 500005 another member (an attack
-- changes its id); 500006 and 500007 spare.  The ids lie above 300000, outside
-- the array of attack 11.
INSERT INTO ils.patron (id, family_name, given_name, street, city, email, phone, dob) VALUES
    (500001, 'Alvarez', 'Maria',  '14 Elm St', 'Springfield', 'maria@example.org',  '555-0101', '1981-03-02'),
    (500002, 'Alvarez', 'Sofia',  '14 Elm St', 'Springfield', 'sofia@example.org',  '555-0101', '2012-06-11'),
    (500003, 'Alvarez', 'Tomás',  '14 Elm St', 'Springfield', 'tomas@example.org',  '555-0102', '1999-01-23'),
    (500004, 'Chen',    'Wei',    '2 Oak Ave', 'Shelbyville', 'wei@example.org',    '555-0199', '1975-09-30'),
    (500005, 'Alvarez', 'Diego',  '14 Elm St', 'Springfield', 'diego@example.org',  '555-0103', '2015-02-01'),
    (500006, 'Okafor',  'Grace',  '9 Birch Rd', 'Capital',    'grace@example.org',  '555-0170', '1990-05-05'),
    (500007, 'Okafor',  'Daniel', '9 Birch Rd', 'Capital',    'daniel@example.org', '555-0171', '1989-07-17');
INSERT INTO ils.card (patron, barcode, active) VALUES
    (500001, 'C1', true), (500001, 'C1-OLD', false), (500002, 'C2', true), (500003, 'C3', true), (500004, 'C4', true),
    (500005, 'C5', true), (500006, 'C6', true), (500007, 'C7', true);
INSERT INTO ils.loan (patron, title, due, returned, stop_fines) VALUES
    (500001, 'L book 1',  now() + interval '7 days', NULL, NULL),
    (500001, 'L book 2',  now() - interval '2 days', NULL, NULL),
    (500001, 'L returned', now() - interval '9 days', now() - interval '10 days', NULL),
    (500002, 'M1 book 1', now() + interval '5 days', NULL, NULL),
    (500002, 'M1 book 2', now() + interval '6 days', NULL, NULL),
    (500002, 'M1 lost',   now() - interval '40 days', NULL, 'LOST'),
    (500003, 'M2 book 1', now() + interval '3 days', NULL, NULL),
    (500003, 'M2 book 2', now() + interval '4 days', NULL, NULL),
    (500004, 'O book',    now() + interval '8 days', NULL, NULL),
    (500005, 'M3 book 1', now() + interval '9 days', NULL, NULL),
    (500005, 'M3 lost',   now() - interval '50 days', NULL, 'LOST'),
    (500006, 'S book',    now() + interval '2 days', NULL, NULL);
INSERT INTO ils.ill_loan (patron, lender, due, returned, stop_fines) VALUES
    (500001, 'State Library', now() + interval '10 days', NULL, NULL),
    (500002, 'State Library', now() + interval '11 days', NULL, NULL),
    (500003, 'State Library', now() + interval '12 days', NULL, NULL),
    (500004, 'State Library', now() + interval '13 days', NULL, NULL),
    (500005, 'State Library', now() - interval '60 days', NULL, 'LOST'),
    (500006, 'State Library', now() + interval '14 days', now(), NULL);
INSERT INTO ils.xact (id, patron) VALUES
    (110, 500001), (111, 500001), (120, 500002), (121, 500002), (130, 500003), (140, 500004), (150, 500005), (160, 500006);
INSERT INTO ils.bill (xact, amount, voided, note) VALUES
    (110, 1.50, false, 'L fine'), (111, 4.00, false, 'L lost book'), (111, 9.99, true, 'L voided'),
    (120, 0.50, false, 'M1 fine'), (121, 2.00, false, 'M1 printing'),
    (130, 12.00, false, 'M2 fine'), (140, 3.00, false, 'O fine'),
    (150, 6.00, false, 'M3 fine'), (160, 1.00, false, 'S fine');
INSERT INTO ils.payment (xact, amount) VALUES (110, 0.50), (140, 1.00);
INSERT INTO ils.cash_payment (xact, amount, cash_drawer) VALUES (120, 0.25, 1), (130, 2.00, 1), (150, 1.00, 2);
INSERT INTO ils.card_payment (xact, amount, cc_last4) VALUES (111, 1.00, '4242'), (130, 3.00, '1881'), (140, 0.50, '0005');
RESET ROLE;

-- attached as in README "Evergreen, worked example"
SELECT patron_group.attach_patrons('ils.patron', 'id',
         name_columns  => '{family_name,given_name}',
         clone_columns => '{family_name,street,city,phone}');
SELECT patron_group.attach_cards('ils.card', 'patron', 'barcode', active_when => 'active');
SELECT patron_group.attach_circulations('ils.loan', 'patron', 'due',
         open_when => 'returned IS NULL',
         lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_circulations('ils.ill_loan', 'patron', 'due',
         open_when => 'returned IS NULL',
         lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('ils.bill', 'charge', 'amount', 'xact',
         via => 'ils.xact', via_id_column => 'id', via_patron_column => 'patron',
         counts_when => 'NOT voided');
SELECT patron_group.attach_money('ils.payment', 'payment', 'amount', 'xact',
         via => 'ils.xact', via_id_column => 'id', via_patron_column => 'patron',
         counts_when => 'NOT voided');

-- the family
SELECT patron_group.move_to_group(ARRAY[500002, 500003, 500005]::bigint[], into_group_of => 500001, reason => 'family');
SELECT patron_group.set_lead(500001, reason => 'parent');
SELECT patron_group.set_consent(500002, 'circulations', true, reason => 'form signed');
SELECT patron_group.set_consent(500002, 'bills', true, reason => 'form signed');

-- limits, enforced on checkouts (generous: the attacks' checkouts pass)
SELECT patron_group.set_limits(NULL, max_balance_owed => 100000, max_items_out => 1000,
                               max_items_overdue => 1000, max_items_lost => 1000);
SELECT patron_group.enforce_limits('ils.loan', true);

-- staff: the circulation desk
SELECT patron_group.grant_staff('staff');
GRANT USAGE ON SCHEMA ils TO staff, opac, signer;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA ils TO staff;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ils TO staff;
GRANT EXECUTE ON FUNCTION patron_group.override_limits(text) TO staff;

-- opac: the catalogue; it is given write privileges too, to prove that
-- writes are refused by the protection and not by a missing grant
SELECT patron_group.register_patron_facing('opac');
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ils TO opac;
GRANT EXECUTE ON FUNCTION patron_group.act_as(bigint), patron_group.payment_plan(bigint, numeric, bigint) TO opac;
SELECT patron_group.protect(t)
  FROM unnest('{ils.patron,ils.card,ils.loan,ils.ill_loan,ils.bill,ils.payment}'::regclass[]) t;

-- signer: the service that signs patrons in
GRANT EXECUTE ON FUNCTION patron_group.issue_token(bigint, interval) TO signer;
