-- Fixture of test/t/031_hostile_library.pl: a library system whose tables
-- are owned by a role that is not a superuser (ils_owner) and that turns
-- hostile once the DBA has attached them, households included.
--
-- Two parts, split by the test at the "-- @@" lines:
--
--   library  run by the bootstrap superuser (the DBA, who becomes the
--            extension's owner) in a fresh database; the roles exist
--            already.  The library system's tables are made by ils_owner
--            (SET ROLE), with domains over some mapped columns from the
--            start: once attached, a mapped column's type cannot change
--            (the mapping views and policies depend on it).  Then the DBA
--            attaches them with the households (group_column, lead_column),
--            protects them and grants the roles what 030_attacks.pl grants.
--
--   plant    run in a session of ils_owner itself: on every table of the
--            library system (the attached ones, the transaction table and
--            every child and partition) row and statement triggers, a
--            CHECK, a rule, a stored generated column, an expression
--            index, row-level security policies (FORCE on some tables), and
--            column defaults on mapped columns, the household column first.
--            Then what the planner itself evaluates, as whoever plans a
--            query on the table, even a plain SELECT: IMMUTABLE calls with
--            constant arguments are folded when the plan is made, in an
--            extended statistics expression, an index expression, a partial
--            index's predicate and a CHECK (constraint exclusion of
--            inheritance children and partitions).
--
-- Every planted object calls ils.payload(what), which tries ALTER ROLE
-- ils_owner SUPERUSER, records in evidence.log as whom it ran, and returns
-- true, so that the planted object changes nothing the extension relies on.
--
-- Patrons: 500001 L (lead of household 100), 500002 M1 (shares circulations
-- and bills), 500003 M2, 500005 in household 100; 500006 and 500007 in
-- household 300; 500004 O, 500008, 500009, 500010, 500011 alone.

-- @@ library

CREATE EXTENSION patron_group;

-- the evidence: one table everybody may append to, owned by the DBA
CREATE SCHEMA evidence;
GRANT USAGE ON SCHEMA evidence TO PUBLIC;
CREATE TABLE evidence.log (
    id           bigserial PRIMARY KEY,
    op           text,                  -- the test's operation (SET hostile.op)
    fired        text NOT NULL,         -- kind:table[:detail] of the planted object
    ran_as       name NOT NULL,         -- current_user
    session_role name NOT NULL,         -- session_user
    ran_as_super boolean NOT NULL,      -- current_user is a superuser
    escalated    boolean NOT NULL,      -- ALTER ROLE ils_owner SUPERUSER succeeded
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
GRANT INSERT ON evidence.log TO PUBLIC;
GRANT USAGE ON SEQUENCE evidence.log_id_seq TO PUBLIC;

CREATE SCHEMA ils AUTHORIZATION ils_owner;
SET ROLE ils_owner;

-- The payload of every planted object.  SECURITY INVOKER: it runs as
-- whoever runs the statement that fires the object.
CREATE FUNCTION ils.payload(what text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s boolean;
    got boolean := false;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE ils_owner SUPERUSER';
        got := true;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    SELECT r.rolsuper INTO s FROM pg_catalog.pg_roles r
     WHERE r.rolname OPERATOR(pg_catalog.=) current_user;
    BEGIN
        INSERT INTO evidence.log (op, fired, ran_as, session_role, ran_as_super, escalated)
        VALUES (current_setting('hostile.op', true), what, current_user, session_user,
                coalesce(s, false), got);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'EVIDENCE-LOST fired=% ran_as=%: % (%)', what, current_user, SQLERRM, SQLSTATE;
    END;
    IF s OR got THEN
        RAISE WARNING 'EVIDENCE fired=% ran_as=% super=% escalated=%', what, current_user, s, got;
    END IF;
    RETURN true;
END
$$;

-- For what must be IMMUTABLE (generated columns, index expressions): the
-- value argument makes it evaluated for each row.
CREATE FUNCTION ils.payload_imm(what text, v text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN ils.payload(what);
END
$$;

-- Column defaults that run the payload and give the usual value.
CREATE SEQUENCE ils.household_seq START 1000;
CREATE FUNCTION ils.next_household() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ils.payload('default:patron.household');
    RETURN pg_catalog.nextval('ils.household_seq')::integer;
END
$$;
CREATE FUNCTION ils.default_bool(what text, v boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ils.payload('default:' || what);
    RETURN v;
END
$$;
CREATE FUNCTION ils.default_null_ts(what text) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ils.payload('default:' || what);
    RETURN NULL;
END
$$;

-- Triggers: every kind runs the payload and leaves the row as it is.
CREATE FUNCTION ils.hostile_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ils.payload(format('trigger:%s:%s %s %s', TG_TABLE_NAME, TG_WHEN, TG_LEVEL, TG_OP));
    IF TG_LEVEL = 'ROW' AND TG_WHEN = 'BEFORE' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RETURN NULL;
END
$$;

-- Domains over mapped columns (the household column and the patron ids
-- must be plain integers: attaching refuses a domain there).
CREATE DOMAIN ils.lead_flag AS boolean CHECK (ils.payload('domain:patron.is_lead'));
CREATE DOMAIN ils.barcode_text AS text CHECK (ils.payload('domain:card.barcode'));
CREATE DOMAIN ils.fines_text AS text CHECK (ils.payload('domain:circulation.stop_fines'));
CREATE DOMAIN ils.amount AS numeric(8,2) CHECK (ils.payload('domain:billing.amount'));
CREATE DOMAIN ils.void_flag AS boolean CHECK (ils.payload('domain:payment.voided'));
CREATE DOMAIN ils.xact_kind AS text CHECK (ils.payload('domain:transaction.kind'));

CREATE TABLE ils.patron (
    id          bigint PRIMARY KEY,
    family_name text NOT NULL,
    given_name  text,
    street      text,
    city        text,
    phone       text,
    email       text,
    household   integer NOT NULL DEFAULT nextval('ils.household_seq'),
    is_lead     ils.lead_flag NOT NULL DEFAULT false,
    deleted     boolean NOT NULL DEFAULT false
);
CREATE TABLE ils.card (
    id      serial PRIMARY KEY,
    patron  bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    barcode ils.barcode_text NOT NULL,
    active  boolean NOT NULL DEFAULT true
);
-- loans, partitioned by due date
CREATE TABLE ils.circulation (
    id         serial,
    patron     bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    item       text NOT NULL,
    due_at     timestamptz NOT NULL,
    checkin_at timestamptz,
    stop_fines ils.fines_text
) PARTITION BY RANGE (due_at);
CREATE TABLE ils.circulation_old PARTITION OF ils.circulation FOR VALUES FROM (MINVALUE) TO ('2030-01-01');
CREATE TABLE ils.circulation_new PARTITION OF ils.circulation FOR VALUES FROM ('2030-01-01') TO (MAXVALUE);
-- the billable transactions (Evergreen's money.billable_xact), with a child
CREATE TABLE ils.transaction (
    id     bigint PRIMARY KEY,
    patron bigint NOT NULL REFERENCES ils.patron ON UPDATE CASCADE ON DELETE CASCADE,
    kind   ils.xact_kind NOT NULL DEFAULT 'fine'
);
CREATE TABLE ils.grocery (note text) INHERITS (ils.transaction);
ALTER TABLE ils.grocery ADD PRIMARY KEY (id);
CREATE TABLE ils.billing (
    id     serial PRIMARY KEY,
    xact   bigint NOT NULL,
    amount ils.amount NOT NULL,
    voided boolean NOT NULL DEFAULT false,
    note   text
);
CREATE TABLE ils.payment (
    id     serial PRIMARY KEY,
    xact   bigint NOT NULL,
    amount numeric(8,2) NOT NULL,
    voided ils.void_flag NOT NULL DEFAULT false
);
CREATE TABLE ils.cash_payment (drawer integer) INHERITS (ils.payment);

CREATE INDEX ON ils.card (patron);
CREATE INDEX ON ils.circulation (patron);
CREATE INDEX ON ils.transaction (patron);
CREATE INDEX ON ils.grocery (patron);
CREATE INDEX ON ils.billing (xact);
CREATE INDEX ON ils.payment (xact);
CREATE INDEX ON ils.cash_payment (xact);

INSERT INTO ils.patron (id, family_name, given_name, street, city, phone, email, household, is_lead) VALUES
    (500001, 'Alvarez', 'Maria',  '14 Elm St',  'Springfield', '555-0101', 'maria@example.org',  100, true),
    (500002, 'Alvarez', 'Sofia',  '14 Elm St',  'Springfield', '555-0101', 'sofia@example.org',  100, false),
    (500003, 'Alvarez', 'Tomás',  '14 Elm St',  'Springfield', '555-0102', 'tomas@example.org',  100, false),
    (500004, 'Chen',    'Wei',    '2 Oak Ave',  'Shelbyville', '555-0199', 'wei@example.org',    400, false),
    (500005, 'Alvarez', 'Diego',  '14 Elm St',  'Springfield', '555-0103', 'diego@example.org',  100, false),
    (500006, 'Okafor',  'Grace',  '9 Birch Rd', 'Capital',     '555-0170', 'grace@example.org',  300, true),
    (500007, 'Okafor',  'Daniel', '9 Birch Rd', 'Capital',     '555-0171', 'daniel@example.org', 300, false),
    (500008, 'Novak',   'Ana',    '1 Pine Ct',  'Capital',     '555-0180', 'ana@example.org',    500, false),
    (500009, 'Novak',   'Ivan',   '3 Pine Ct',  'Capital',     '555-0181', 'ivan@example.org',   600, false),
    (500010, 'Berg',    'Lena',   '5 Ash Way',  'Ogdenville',  '555-0190', 'lena@example.org',   700, false),
    (500011, 'Berg',    'Ole',    '7 Ash Way',  'Ogdenville',  '555-0191', 'ole@example.org',    800, false);
INSERT INTO ils.card (patron, barcode, active) VALUES
    (500001, 'C1', true), (500001, 'C1-OLD', false), (500002, 'C2', true), (500003, 'C3', true),
    (500004, 'C4', true), (500005, 'C5', true), (500006, 'C6', true), (500007, 'C7', true),
    (500008, 'C8', true), (500009, 'C9', true), (500010, 'C10', true), (500011, 'C11', true);
INSERT INTO ils.circulation (patron, item, due_at, checkin_at, stop_fines) VALUES
    (500001, 'L book 1',   '2031-01-10', NULL, NULL),
    (500001, 'L book 2',   '2020-01-10', NULL, NULL),
    (500001, 'L returned', '2020-02-10', '2020-02-01', NULL),
    (500002, 'M1 book 1',  '2031-02-10', NULL, NULL),
    (500002, 'M1 lost',    '2021-01-10', NULL, 'LOST'),
    (500003, 'M2 book 1',  '2031-03-10', NULL, NULL),
    (500003, 'M2 book 2',  '2031-03-11', NULL, NULL),
    (500004, 'O book',     '2031-04-10', NULL, NULL),
    (500005, 'D book',     '2031-05-10', NULL, NULL),
    (500006, 'G book',     '2031-06-10', NULL, NULL),
    (500008, 'A book',     '2031-07-10', NULL, NULL);
INSERT INTO ils.transaction (id, patron) VALUES
    (110, 500001), (111, 500001), (120, 500002), (130, 500003), (140, 500004), (150, 500005), (160, 500006);
INSERT INTO ils.grocery (id, patron, kind, note) VALUES (170, 500001, 'grocery', 'printing'), (180, 500002, 'grocery', 'copies');
INSERT INTO ils.billing (xact, amount, voided, note) VALUES
    (110, 1.50, false, 'L fine'), (111, 4.00, false, 'L lost book'), (111, 9.99, true, 'L voided'),
    (120, 0.50, false, 'M1 fine'), (130, 12.00, false, 'M2 fine'), (140, 3.00, false, 'O fine'),
    (150, 6.00, false, 'D fine'), (160, 1.00, false, 'G fine'), (170, 0.40, false, 'L printing'),
    (180, 0.20, false, 'M1 copies');
INSERT INTO ils.payment (xact, amount) VALUES (110, 0.50), (140, 1.00);
INSERT INTO ils.cash_payment (xact, amount, drawer) VALUES (120, 0.25, 1), (130, 2.00, 1), (170, 0.40, 2);
RESET ROLE;

-- attached as in README "Evergreen, worked example": households included
SELECT patron_group.attach_patrons('ils.patron', 'id',
         name_columns  => '{family_name,given_name}',
         clone_columns => '{family_name,street,city,phone}',
         deleted_when  => 'deleted',
         group_column  => 'household',
         lead_column   => 'is_lead');
SELECT patron_group.attach_cards('ils.card', 'patron', 'barcode', active_when => 'active');
SELECT patron_group.attach_circulations('ils.circulation', 'patron', 'due_at',
         open_when => 'checkin_at IS NULL',
         lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('ils.billing', 'charge', 'amount', 'xact',
         via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron',
         counts_when => 'NOT voided');
SELECT patron_group.attach_money('ils.payment', 'payment', 'amount', 'xact',
         via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron',
         counts_when => 'NOT voided');

-- M1 shares with the lead
SELECT patron_group.set_consent(500002, 'circulations', true, reason => 'form signed');
SELECT patron_group.set_consent(500002, 'bills', true, reason => 'form signed');

-- limits, enforced on checkouts (generous: every checkout of the test passes)
SELECT patron_group.set_limits(NULL, max_balance_owed => 100000, max_items_out => 1000,
                               max_items_overdue => 1000, max_items_lost => 1000);
SELECT patron_group.enforce_limits('ils.circulation', true);

-- staff: the circulation desk
SELECT patron_group.grant_staff('staff');
GRANT USAGE ON SCHEMA ils TO staff, opac, signer, supervisor_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ils TO staff;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ils TO staff;
GRANT EXECUTE ON FUNCTION patron_group.override_limits(text) TO staff;

-- supervisors: the limits
SELECT patron_group.grant_supervisor('supervisor_role');

-- opac: the catalogue, patron-facing; given write privileges too, as in 030
SELECT patron_group.register_patron_facing('opac');
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ils TO opac;
GRANT EXECUTE ON FUNCTION patron_group.act_as(bigint), patron_group.payment_plan(bigint, numeric, bigint) TO opac;
SELECT patron_group.protect(t)
  FROM unnest('{ils.patron,ils.card,ils.circulation,ils.billing,ils.payment}'::regclass[]) t;

-- signer: the service that signs patrons in
GRANT EXECUTE ON FUNCTION patron_group.issue_token(bigint, interval) TO signer;

-- @@ plant

-- Run by ils_owner itself, after the DBA attached and protected the tables.

-- defaults on mapped columns; the household column's is what
-- remove_from_group() makes the extension write (SET household = DEFAULT)
ALTER TABLE ils.patron ALTER COLUMN household SET DEFAULT ils.next_household();
ALTER TABLE ils.patron ALTER COLUMN is_lead SET DEFAULT ils.default_bool('patron.is_lead', false);
ALTER TABLE ils.patron ALTER COLUMN deleted SET DEFAULT ils.default_bool('patron.deleted', false);
ALTER TABLE ils.card ALTER COLUMN active SET DEFAULT ils.default_bool('card.active', true);
ALTER TABLE ils.circulation ALTER COLUMN checkin_at SET DEFAULT ils.default_null_ts('circulation.checkin_at');
ALTER TABLE ils.billing ALTER COLUMN voided SET DEFAULT ils.default_bool('billing.voided', false);
ALTER TABLE ils.payment ALTER COLUMN voided SET DEFAULT ils.default_bool('payment.voided', false);
ALTER TABLE ils.cash_payment ALTER COLUMN voided SET DEFAULT ils.default_bool('cash_payment.voided', false);

DO $plant$
DECLARE
    t record;
    w text;
    l text;
BEGIN
    -- root: a table whose columns and constraints its children inherit
    -- (a generated column is added there); force: FORCE ROW LEVEL SECURITY,
    -- so that the owner's own statements pass through the policies too
    FOR t IN SELECT * FROM (VALUES
                ('patron', true, true), ('card', true, false),
                ('circulation', true, false), ('circulation_old', false, false),
                ('circulation_new', false, false),
                ('transaction', true, true), ('grocery', false, true),
                ('billing', true, false), ('payment', true, false), ('cash_payment', false, false))
                v(name, root, force)
    LOOP
        -- row and statement triggers, BEFORE and AFTER, for every DML
        FOREACH w IN ARRAY ARRAY['before', 'after'] LOOP
            FOREACH l IN ARRAY ARRAY['row', 'statement'] LOOP
                EXECUTE format('CREATE TRIGGER %I %s INSERT OR UPDATE OR DELETE ON ils.%I '
                               'FOR EACH %s EXECUTE FUNCTION ils.hostile_trigger()',
                               format('hostile_%s_%s_%s', w, l, t.name), w, t.name, l);
            END LOOP;
        END LOOP;
        -- a CHECK constraint
        EXECUTE format('ALTER TABLE ils.%I ADD CONSTRAINT %I CHECK (ils.payload(%L))',
                       t.name, 'hostile_check_' || t.name, 'check:' || t.name);
        -- rules: the extension's statements are rewritten with them
        FOREACH w IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
            EXECUTE format('CREATE RULE %I AS ON %s TO ils.%I DO ALSO SELECT ils.payload(%L)',
                           format('hostile_rule_%s_%s', lower(w), t.name), w, t.name,
                           format('rule:%s:%s', t.name, w));
        END LOOP;
        -- a stored generated column (children and partitions inherit it)
        IF t.root THEN
            EXECUTE format('ALTER TABLE ils.%I ADD COLUMN hostile_generated boolean '
                           'GENERATED ALWAYS AS (ils.payload_imm(%L, id::text)) STORED',
                           t.name, 'generated:' || t.name);
        END IF;
        -- an expression index (a partitioned table's reaches its partitions;
        -- inheritance children get their own)
        IF t.name NOT IN ('circulation_old', 'circulation_new') THEN
            EXECUTE format('CREATE INDEX %I ON ils.%I (ils.payload_imm(%L, %s))',
                           'hostile_index_' || t.name, t.name, 'index:' || t.name,
                           CASE t.name
                               WHEN 'patron' THEN 'household::text'
                               WHEN 'card' THEN 'barcode::text'
                               WHEN 'circulation' THEN '(checkin_at IS NULL)::text'
                               WHEN 'billing' THEN 'voided::text'
                               WHEN 'payment' THEN 'voided::text'
                               WHEN 'cash_payment' THEN 'voided::text'
                               ELSE 'patron::text' END);
        END IF;
        -- row-level security: a restrictive policy that everything passes
        -- through, and a permissive one of the owner's too
        EXECUTE format('ALTER TABLE ils.%I ENABLE ROW LEVEL SECURITY', t.name);
        EXECUTE format('CREATE POLICY %I ON ils.%I AS RESTRICTIVE FOR ALL TO PUBLIC '
                       'USING (ils.payload(%L)) WITH CHECK (ils.payload(%L))',
                       'hostile_restrictive_' || t.name, t.name,
                       format('policy:%s:using', t.name), format('policy:%s:check', t.name));
        EXECUTE format('CREATE POLICY %I ON ils.%I AS PERMISSIVE FOR ALL TO PUBLIC '
                       'USING (ils.payload(%L)) WITH CHECK (ils.payload(%L))',
                       'hostile_permissive_' || t.name, t.name,
                       format('policy:%s:permissive using', t.name),
                       format('policy:%s:permissive check', t.name));
        IF t.force THEN
            EXECUTE format('ALTER TABLE ils.%I FORCE ROW LEVEL SECURITY', t.name);
        END IF;
    END LOOP;
END
$plant$;

-- What the planner evaluates: reading a table runs these, as the role that
-- plans the query (labels "plan:...").  The constant arguments make the
-- planner fold the call when it loads the table's statistics objects, its
-- indexes' expressions and predicates (once per session for an index), and
-- a child's CHECK constraints for constraint exclusion.
DO $plan$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['patron', 'card', 'circulation', 'circulation_old', 'circulation_new',
                             'transaction', 'grocery', 'billing', 'payment', 'cash_payment'] LOOP
        EXECUTE format('CREATE STATISTICS ils.%I ON (ils.payload_imm(%L, %L)::integer), id FROM ils.%I',
                       'hostile_statistics_' || t, 'plan:statistics:' || t, 'constant', t);
        EXECUTE format('ALTER TABLE ils.%I ADD CONSTRAINT %I CHECK (ils.payload_imm(%L, %L))',
                       t, 'hostile_constant_check_' || t, 'plan:check:' || t, 'constant');
        IF t NOT IN ('circulation_old', 'circulation_new') THEN
            EXECUTE format('CREATE INDEX %I ON ils.%I ((ils.payload_imm(%L, %L)))',
                           'hostile_constant_index_' || t, t, 'plan:index:' || t, 'constant');
            EXECUTE format('CREATE INDEX %I ON ils.%I (id) WHERE ils.payload_imm(%L, %L)',
                           'hostile_partial_index_' || t, t, 'plan:partial index:' || t, 'constant');
        END IF;
    END LOOP;
END
$plan$;
