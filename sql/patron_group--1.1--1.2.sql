/* patron_group 1.1 -> 1.2: upgrade script */

\echo Use "ALTER EXTENSION patron_group UPDATE" to load this file. \quit

-- ===========================================================================
-- Mappings stored as parsed node trees
--
-- 1.1 kept each attached table's conditions (open_when, lost_when,
-- counts_when, active_when) as text and parsed them again whenever it
-- counted, under whatever search_path was in force.  From 1.2 each attached
-- table has a mapping view, patron_group.<table>_map: PostgreSQL stores it
-- parsed, records what it depends on, and dumps it as qualified SQL.
-- ===========================================================================

-- ===========================================================================
-- Loan states, deleted patrons, the library system's own balance
--
-- Each state a library system shows an open loan in (lost, claims returned,
-- long overdue, else out or overdue) is a condition of its own and a figure
-- of its own; out_includes says which states count as out (NULL: all of
-- them, as before 1.2).  A money table may name the column that says what is
-- still owed on a row (Koha's amountoutstanding); the balance owed is kept,
-- and is billed minus paid where no such column is given.
-- ===========================================================================

ALTER TABLE @extschema@.attachments
    ADD COLUMN out_includes text[],
    ADD COLUMN outstanding_column name,
    ADD COLUMN group_column name,
    ADD COLUMN lead_column name,
    ADD COLUMN card_id_column name,
    ADD COLUMN primary_card_column name;
COMMENT ON COLUMN @extschema@.attachments.card_id_column IS
'cards: the card''s id column';
COMMENT ON COLUMN @extschema@.attachments.primary_card_column IS
'cards: the patron table''s column naming the primary card (Evergreen: actor.usr.card), set by clone_patron and shown as the barcode';
COMMENT ON COLUMN @extschema@.attachments.group_column IS
'patrons: the library system''s household column (Evergreen: usrgroup), kept in step with the groups';
COMMENT ON COLUMN @extschema@.attachments.lead_column IS
'patrons: the library system''s household lead column (Evergreen: master_account), kept in step with the leads';
COMMENT ON COLUMN @extschema@.attachments.out_includes IS
'circulations: the states of an open loan counted in items_out besides out (lost, claims_returned, long_overdue); NULL: all';
COMMENT ON COLUMN @extschema@.attachments.outstanding_column IS
'money: the column of what is still owed on a row, the balance owed; NULL: billed minus paid';

ALTER TABLE @extschema@.accounts
    ADD COLUMN items_claims_returned bigint NOT NULL DEFAULT 0,
    ADD COLUMN items_long_overdue bigint NOT NULL DEFAULT 0,
    ADD COLUMN balance_owed numeric NOT NULL DEFAULT 0;
ALTER TABLE @extschema@.groups
    ADD COLUMN household bigint,
    ADD COLUMN items_claims_returned bigint NOT NULL DEFAULT 0,
    ADD COLUMN items_long_overdue bigint NOT NULL DEFAULT 0,
    ADD COLUMN balance_owed numeric NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX groups_household ON @extschema@.groups (household) WHERE household IS NOT NULL;
COMMENT ON COLUMN @extschema@.groups.household IS
'The library system''s household this group is (attach_patrons'' group_column), or NULL';
UPDATE @extschema@.accounts SET balance_owed = amount_billed - amount_paid;
UPDATE @extschema@.groups SET balance_owed = amount_billed - amount_paid;
-- A row that arrives without a balance (restored from a dump of an older
-- version, which had none) owes its billed minus paid, as those versions
-- counted; the extension's own inserts start at zero the same way.
ALTER TABLE @extschema@.accounts ALTER COLUMN balance_owed DROP DEFAULT;
ALTER TABLE @extschema@.groups ALTER COLUMN balance_owed DROP DEFAULT;
CREATE FUNCTION @extschema@.balance_from_totals()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.balance_owed := NEW.amount_billed - NEW.amount_paid;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@.balance_from_totals() IS
'Gives an account or group inserted without a balance (from a dump of a version before 1.2) billed minus paid';
CREATE TRIGGER balance_from_totals BEFORE INSERT ON @extschema@.accounts
    FOR EACH ROW WHEN (NEW.balance_owed IS NULL) EXECUTE FUNCTION @extschema@.balance_from_totals();
CREATE TRIGGER balance_from_totals BEFORE INSERT ON @extschema@.groups
    FOR EACH ROW WHEN (NEW.balance_owed IS NULL) EXECUTE FUNCTION @extschema@.balance_from_totals();
REVOKE ALL ON FUNCTION @extschema@.balance_from_totals() FROM PUBLIC;

ALTER TABLE @extschema@.attachments ADD COLUMN mapping regclass;
COMMENT ON COLUMN @extschema@.attachments.mapping IS
'The view that reads the attached table as patron_group counts it (its conditions, parsed once)';

CREATE FUNCTION @extschema@.make_mapping_view(attached_table regclass, condition text, lost_condition text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'pg_make_mapping_view'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
-- a card's id, as attach_cards() records it by default from 1.2
UPDATE @extschema@.attachments a SET card_id_column = 'id'
 WHERE a.kind = 'cards' AND EXISTS (SELECT FROM pg_catalog.pg_attribute t
                                     WHERE t.attrelid = a.relid::oid AND t.attname = 'id' AND NOT t.attisdropped);
UPDATE @extschema@.attachments
   SET mapping = @extschema@.make_mapping_view(relid, condition, lost_condition);
DROP FUNCTION @extschema@.make_mapping_view(regclass, text, text);

-- ===========================================================================
-- Trees: attaching a table covers its children and partitions, and the
-- tables above it; one C function says which triggers each table needs.
-- ===========================================================================

CREATE FUNCTION @extschema@.expected_triggers(
    OUT attached_table regclass, OUT on_table regclass, OUT trigger_name name, OUT ord integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_expected_triggers'
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.expected_triggers() IS
'Every trigger the attachments need: on each table of an attached table''s tree, of a transaction table''s tree, and on the tables above them';

CREATE FUNCTION @extschema@.within_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pg_within_trigger'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.within_trigger() IS
'On a table above an attached tree: recounts the patrons named by the rows a statement on it changed';
REVOKE ALL ON FUNCTION @extschema@.expected_triggers(), @extschema@.within_trigger() FROM PUBLIC;

-- enforce_limits() covers the table's tree
CREATE OR REPLACE FUNCTION @extschema@.enforce_limits(circulation_table regclass, enabled boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_enforce_limits'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- The status view showed the conditions' text; it now shows the mapping view
-- and its definition.  The rest is as in 1.1, and every child table and
-- partition of a protected table, and the transaction tables behind
-- protected money, must carry the policies too.
CREATE OR REPLACE VIEW @extschema@.attachment_status WITH (security_invoker = true) AS
WITH RECURSIVE t AS (
    SELECT a.relid, a.kind, a.protected, a.attached_at, a.attached_by, a.via_relid,
           pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
               'id_column', a.id_column, 'patron_column', a.patron_column,
               'barcode_column', a.barcode_column, 'name_columns', a.name_columns,
               'clone_columns', a.clone_columns,
               'due_column', a.due_column,
               'money_kind', a.money_kind, 'amount_column', a.amount_column,
               'via', a.via_relid::text, 'via_id_column', a.via_id_column,
               'via_patron_column', a.via_patron_column,
               'mapping_view', a.mapping::text,
               'mapping_definition', CASE WHEN pg_catalog.to_regclass(a.mapping::text) IS NOT NULL
                                          THEN pg_catalog.pg_get_viewdef(a.mapping) END)) AS mapping,
           CASE WHEN a.protected
               THEN ARRAY['patron_group_everyone']
                    || CASE WHEN EXISTS (SELECT FROM @extschema@.patron_facing_roles)
                            THEN ARRAY['patron_group_patron_read', 'patron_group_patron_insert',
                                       'patron_group_patron_update', 'patron_group_patron_delete']
                            ELSE ARRAY[]::text[] END
               ELSE ARRAY[]::text[] END AS expected_policies,
           a.barcode_index,
           a.mapping AS mapping_view,
           CASE WHEN a.kind IN ('circulations', 'money') THEN a.patron_column END AS indexed_column
      FROM @extschema@.attachments a
),
-- every trigger the attachments need, where, and which of them are there
e AS (
    SELECT x.*, tg.tgenabled
      FROM @extschema@.expected_triggers() x
      LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = x.on_table AND tg.tgname = x.trigger_name
),
-- what a protected attachment protects: its tree, and its transaction table's tree
protects(root, member) AS (
    SELECT t.relid::pg_catalog.oid, t.relid::pg_catalog.oid FROM t WHERE t.protected
    UNION
    SELECT t.relid::pg_catalog.oid, t.via_relid::pg_catalog.oid FROM t
     WHERE t.protected AND t.via_relid IS NOT NULL
    UNION
    SELECT p.root, i.inhrelid FROM protects p
      JOIN pg_catalog.pg_inherits i ON i.inhparent = p.member
),
s AS (
    SELECT t.*,
           ARRAY(SELECT e.trigger_name::text FROM e
                  WHERE e.attached_table = t.relid AND e.on_table = t.relid AND e.tgenabled <> 'D'
                  ORDER BY 1) AS triggers,
           ARRAY(SELECT e.trigger_name::text FROM e
                  WHERE e.attached_table = t.relid AND e.on_table = t.via_relid AND e.tgenabled <> 'D'
                  ORDER BY 1) AS via_triggers,
           ARRAY(SELECT 'trigger ' || e.trigger_name || ' on ' || e.on_table::text
                        || CASE WHEN e.tgenabled = 'D' THEN ' (disabled)' ELSE ' (dropped)' END
                   FROM e WHERE e.attached_table = t.relid AND (e.tgenabled IS NULL OR e.tgenabled = 'D')
                  ORDER BY e.on_table = t.relid DESC, e.on_table = t.via_relid DESC, e.ord) AS missing_triggers,
           ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
                  WHERE p.polrelid = t.relid AND p.polname::text LIKE 'patron\_group\_%' ORDER BY 1) AS policies,
           (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = t.relid) AS row_security,
           -- members of what it protects that lack row-level security or the policy open to everyone
           ARRAY(SELECT pr.member::pg_catalog.regclass::text FROM protects pr
                   JOIN pg_catalog.pg_class c ON c.oid = pr.member
                  WHERE pr.root = t.relid::pg_catalog.oid AND pr.member <> t.relid::pg_catalog.oid
                    AND (NOT c.relrowsecurity OR NOT EXISTS (
                             SELECT FROM pg_catalog.pg_policy p WHERE p.polrelid = pr.member
                                AND p.polname = 'patron_group_everyone'))
                  ORDER BY 1) AS unprotected_members,
           (SELECT i.indexrelid::regclass FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = t.relid AND t.barcode_index IS NOT NULL
               AND c.relname = (SELECT p[pg_catalog.array_upper(p, 1)]
                                  FROM pg_catalog.parse_ident(t.barcode_index) p)) AS barcode_index_found,
           (SELECT pg_catalog.min(i.indexrelid::regclass::text)
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_attribute att ON att.attrelid = t.relid
                   AND att.attnum = i.indkey[0] AND att.attname = t.indexed_column
             WHERE i.indrelid = t.relid AND i.indisvalid) AS patron_index
      FROM t
)
SELECT s.relid AS attached_table,
       s.kind,
       s.mapping,
       s.attached_at,
       s.attached_by,
       s.triggers || s.via_triggers AS triggers,
       s.policies,
       s.row_security,
       COALESCE(s.barcode_index_found::text, s.patron_index) AS patron_or_barcode_index,
       ARRAY(SELECT 'mapping view of ' || s.relid::text
              WHERE pg_catalog.to_regclass(s.mapping_view::text) IS NULL
             UNION ALL
             SELECT m FROM pg_catalog.unnest(s.missing_triggers) WITH ORDINALITY AS x(m, n)
             UNION ALL
             SELECT 'policy ' || e || ' on ' || s.relid::text
               FROM pg_catalog.unnest(s.expected_policies) e WHERE e <> ALL (s.policies)
             UNION ALL
             SELECT 'row-level security on ' || s.relid::text WHERE s.protected AND NOT s.row_security
             UNION ALL
             SELECT 'protection of ' || m FROM pg_catalog.unnest(s.unprotected_members) m
             UNION ALL
             SELECT 'barcode index ' || s.barcode_index WHERE s.barcode_index IS NOT NULL
                    AND s.barcode_index_found IS NULL
             UNION ALL
             SELECT 'index on ' || s.relid::text || ' (' || pg_catalog.quote_ident(s.indexed_column) || ')'
              WHERE s.indexed_column IS NOT NULL AND s.patron_index IS NULL) AS missing
  FROM s;
COMMENT ON COLUMN @extschema@.attachment_status.mapping IS
'The columns given when attaching, the mapping view and its definition (with the conditions), as JSON';
COMMENT ON COLUMN @extschema@.attachment_status.missing IS
'What should be there and is not: the mapping view, a dropped or disabled trigger, a dropped policy, row-level security switched off on the table or on a child, partition or transaction table it protects, a missing index (empty when all is well)';

-- The conditions' text is not read any more.  The columns stay, empty, for
-- a dump taken under 1.0 or 1.1 restored where 1.2 is installed: a row that
-- arrives without a mapping view gets one made from its text, which is then
-- cleared, as this update does.
UPDATE @extschema@.attachments SET condition = NULL, lost_condition = NULL;
COMMENT ON COLUMN @extschema@.attachments.condition IS
'Empty since 1.2 (the condition is in the mapping view); filled only by a dump of an older version while it is restored';
COMMENT ON COLUMN @extschema@.attachments.lost_condition IS
'Empty since 1.2 (lost_when is in the mapping view); filled only by a dump of an older version while it is restored';
CREATE FUNCTION @extschema@.attachments_restore()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pg_attachments_restore'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.attachments_restore() IS
'Makes the mapping view of an attachment restored from a dump of a version before 1.2';
CREATE TRIGGER attachments_restore
    AFTER INSERT ON @extschema@.attachments
    FOR EACH ROW EXECUTE FUNCTION @extschema@.attachments_restore();
REVOKE ALL ON FUNCTION @extschema@.attachments_restore() FROM PUBLIC;

-- ===========================================================================
-- Consent is compared with the time the statement started, not the
-- transaction's: no statement that starts after a consent ends sees under it.
-- ===========================================================================

CREATE OR REPLACE VIEW @extschema@.member_summary WITH (security_invoker = true) AS
SELECT a.patron_id,
       d.barcode,
       d.display_name,
       a.group_id,
       g.label AS group_label,
       a.is_lead,
       a.share_circulations,
       a.share_circulations_until,
       a.share_circulations AND (a.share_circulations_until IS NULL
           OR a.share_circulations_until > pg_catalog.statement_timestamp()) AS circulations_shared_now,
       a.share_bills,
       a.share_bills_until,
       a.share_bills AND (a.share_bills_until IS NULL
           OR a.share_bills_until > pg_catalog.statement_timestamp()) AS bills_shared_now,
       a.items_out,
       d.items_overdue,
       a.items_lost,
       a.amount_billed,
       a.amount_paid,
       a.balance_owed,
       a.items_claims_returned,
       a.items_long_overdue
  FROM @extschema@.accounts a
  LEFT JOIN @extschema@.groups g ON g.group_id = a.group_id
  CROSS JOIN LATERAL @extschema@.patron_details(a.patron_id) d;
COMMENT ON COLUMN @extschema@.member_summary.items_out IS
'Open loans counted as out: out and overdue, and the states out_includes names (by default all: lost, claims returned and long overdue included)';
COMMENT ON COLUMN @extschema@.member_summary.items_overdue IS
'Open loans out (not lost, claims returned or long overdue) and due before now, counted when read';
COMMENT ON COLUMN @extschema@.member_summary.balance_owed IS
'What the patron owes: amount_billed minus amount_paid, or the library system''s own outstanding amounts where a money table names them';
COMMENT ON COLUMN @extschema@.member_summary.items_claims_returned IS 'Open loans the patron claims to have returned';
COMMENT ON COLUMN @extschema@.member_summary.items_long_overdue IS 'Open loans long overdue';

CREATE OR REPLACE VIEW @extschema@.group_summary WITH (security_invoker = true) AS
SELECT g.group_id,
       g.label,
       g.created_at,
       g.member_count,
       g.lead_count,
       g.items_out,
       (SELECT COALESCE(pg_catalog.sum(d.items_overdue), 0)::bigint
          FROM @extschema@.accounts m,
               LATERAL @extschema@.patron_details(m.patron_id) d
         WHERE m.group_id = g.group_id) AS items_overdue,
       g.items_lost,
       g.amount_billed,
       g.amount_paid,
       g.balance_owed,
       g.items_claims_returned,
       g.items_long_overdue
  FROM @extschema@.groups g;
COMMENT ON COLUMN @extschema@.group_summary.items_out IS
'Open loans of all members counted as out: out and overdue, and the states out_includes names (by default all)';
COMMENT ON COLUMN @extschema@.group_summary.items_overdue IS
'Open loans of all members out (not lost, claims returned or long overdue) and due before now, counted when read';
COMMENT ON COLUMN @extschema@.group_summary.balance_owed IS
'What the members owe: amount_billed minus amount_paid, or the library system''s own outstanding amounts where a money table names them';
COMMENT ON COLUMN @extschema@.group_summary.items_claims_returned IS 'Open loans of all members claimed returned';
COMMENT ON COLUMN @extschema@.group_summary.items_long_overdue IS 'Open loans of all members long overdue';
COMMENT ON COLUMN @extschema@.accounts.items_claims_returned IS 'Open loans in the state claims returned';
COMMENT ON COLUMN @extschema@.accounts.items_long_overdue IS 'Open loans in the state long overdue';
COMMENT ON COLUMN @extschema@.accounts.balance_owed IS 'What the patron owes (billed minus paid, or the library system''s outstanding amounts)';
COMMENT ON COLUMN @extschema@.groups.items_claims_returned IS 'Open loans of all members in the state claims returned';
COMMENT ON COLUMN @extschema@.groups.items_long_overdue IS 'Open loans of all members in the state long overdue';
COMMENT ON COLUMN @extschema@.groups.balance_owed IS 'What the members owe';

-- The attach functions take the new conditions, and Group Member Details
-- shows the new figures (its grants are kept across the new definition).
DROP FUNCTION @extschema@.attach_patrons(regclass, name, name, name[], name[]);
CREATE FUNCTION @extschema@.attach_patrons(patron_table regclass,
    id_column name DEFAULT 'id',
    barcode_column name DEFAULT NULL,
    name_columns name[] DEFAULT NULL,
    clone_columns name[] DEFAULT '{}',
    deleted_when text DEFAULT NULL,
    group_column name DEFAULT NULL,
    lead_column name DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_attach_patrons'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attach_patrons(regclass, name, name, name[], name[], text, name, name) IS
'Attach the library system''s patron table; deleted_when says when it has deleted a patron (who then leaves the group); group_column and lead_column are its own households, imported and kept in step';

DROP FUNCTION @extschema@.attach_cards(regclass, name, name, text);
CREATE FUNCTION @extschema@.attach_cards(card_table regclass,
    patron_column name DEFAULT 'patron',
    barcode_column name DEFAULT 'barcode',
    active_when text DEFAULT NULL,
    primary_card_column name DEFAULT NULL,
    card_id_column name DEFAULT 'id')
RETURNS void
AS 'MODULE_PATHNAME', 'pg_attach_cards'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attach_cards(regclass, name, name, text, name, name) IS
'Attach a card table; primary_card_column is the patron table''s column naming the primary card (its card_id_column)';
REVOKE ALL ON FUNCTION @extschema@.attach_cards(regclass, name, name, text, name, name) FROM PUBLIC;

DROP FUNCTION @extschema@.attach_circulations(regclass, name, name, text, text);
CREATE FUNCTION @extschema@.attach_circulations(circulation_table regclass,
    patron_column name DEFAULT 'patron',
    due_column name DEFAULT 'due_at',
    open_when text DEFAULT 'true',
    lost_when text DEFAULT 'false',
    claims_returned_when text DEFAULT NULL,
    long_overdue_when text DEFAULT NULL,
    renewal_when text DEFAULT NULL,
    out_includes text[] DEFAULT '{lost,claims_returned,long_overdue}')
RETURNS void
AS 'MODULE_PATHNAME', 'pg_attach_circulations'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attach_circulations(regclass, name, name, text, text, text, text, text, text[]) IS
'Attach a loans table: when a loan is open, lost, claimed returned, long overdue, a renewal, and which states count as out';

DROP FUNCTION @extschema@.attach_money(regclass, text, name, name, regclass, name, name, text);
CREATE FUNCTION @extschema@.attach_money(money_table regclass,
    kind text,
    amount_column name DEFAULT 'amount',
    patron_column name DEFAULT 'patron',
    via regclass DEFAULT NULL,
    via_id_column name DEFAULT 'id',
    via_patron_column name DEFAULT 'patron',
    counts_when text DEFAULT 'true',
    outstanding_column name DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_attach_money'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attach_money(regclass, text, name, name, regclass, name, name, text, name) IS
'Attach a bills (kind charge), payments (payment) or signed-amount (signed) table, naming the patron directly or through a transaction table (via); outstanding_column: the library system''s own balance of each row';
REVOKE ALL ON FUNCTION @extschema@.attach_patrons(regclass, name, name, name[], name[], text, name, name),
    @extschema@.attach_circulations(regclass, name, name, text, text, text, text, text, text[]),
    @extschema@.attach_money(regclass, text, name, name, regclass, name, name, text, name) FROM PUBLIC;

DO $$
DECLARE
    acl aclitem[] := (SELECT proacl FROM pg_catalog.pg_proc
                       WHERE oid = '@extschema@.group_members(bigint)'::pg_catalog.regprocedure);
    g record;
BEGIN
    DROP FUNCTION @extschema@.group_members(bigint);
    CREATE FUNCTION @extschema@.group_members(patron_id bigint,
        OUT group_id bigint, OUT group_label text, OUT group_created_at timestamptz,
        OUT member_id bigint, OUT barcode text, OUT display_name text, OUT is_lead boolean,
        OUT items_out bigint, OUT items_overdue bigint, OUT items_lost bigint,
        OUT items_claims_returned bigint, OUT items_long_overdue bigint,
        OUT balance_owed numeric)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'pg_group_members'
    LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 6
    SET search_path = pg_catalog, pg_temp;
    REVOKE ALL ON FUNCTION @extschema@.group_members(bigint) FROM PUBLIC;
    FOR g IN SELECT (pg_catalog.aclexplode(acl)).* LOOP
        IF g.grantee <> 0 AND g.privilege_type = 'EXECUTE' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.group_members(bigint) TO %I',
                                      pg_catalog.pg_get_userbyid(g.grantee));
        END IF;
    END LOOP;
    -- grants made here would count as the function's initial privileges,
    -- which pg_dump leaves to CREATE EXTENSION: forget them, so that a dump
    -- keeps the staff's and the catalogue's grants
    DELETE FROM pg_catalog.pg_init_privs
     WHERE classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND objoid = '@extschema@.group_members(bigint)'::pg_catalog.regprocedure;
END
$$;
COMMENT ON FUNCTION @extschema@.group_members(bigint) IS
'Group Member Details: every member of the patron''s group with barcode, name, lead flag and totals, then a row (member_id NULL) with the group''s totals';

-- Why the totals are written through SQL rather than directly (NULL: they
-- are written directly), as health() reports it
CREATE FUNCTION @extschema@.direct_refusal()
RETURNS text
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pg_direct_refusal';
REVOKE ALL ON FUNCTION @extschema@.direct_refusal() FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.direct_refusal() IS
'Why the totals are written through SQL instead of directly (a trigger, rule, CHECK or index on a total of accounts or groups), or NULL when they are written directly';

-- health(): the same checks, consents compared with the statement's time,
-- and the mapping views and the protection of children among what can be
-- missing
CREATE OR REPLACE FUNCTION @extschema@.health(
    OUT check_name text, OUT severity text, OUT subject text, OUT detail text, OUT fix text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    pmap record;
BEGIN
    -- tables the library system dropped while attached
    FOR r IN SELECT a.relid::oid AS oid, a.kind FROM patron_group.attachments a
              WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = a.relid::oid)
                 OR NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = COALESCE(a.via_relid::oid, a.relid::oid))
              ORDER BY 1 LOOP
        check_name := 'dropped table'; severity := 'error';
        subject := 'table ' || r.oid;
        detail := pg_catalog.format('the %s table attached with OID %s (or its transaction table) no longer exists', r.kind, r.oid);
        fix := pg_catalog.format('SELECT patron_group.detach(%s);', r.oid);
        RETURN NEXT;
    END LOOP;
    IF FOUND THEN
        RETURN;     -- the other checks read the attached tables
    END IF;

    SELECT * INTO pmap FROM patron_group.attachments WHERE kind = 'patrons';
    IF NOT FOUND THEN
        check_name := 'no patron table'; severity := 'notice'; subject := NULL;
        detail := 'No patron table is attached: there are no accounts to group.';
        fix := 'SELECT patron_group.attach_patrons(''schema.patron_table'', ...);';
        RETURN NEXT;
        RETURN;
    END IF;

    -- totals that differ from a fresh count
    FOR r IN SELECT * FROM patron_group.verify() LOOP
        check_name := 'drift'; severity := 'error';
        subject := r.scope || ' ' || r.id;
        detail := pg_catalog.format('%s is recorded as %s but counts %s', r.item, r.recorded, r.actual);
        fix := CASE r.scope
                   WHEN 'patron' THEN pg_catalog.format('SELECT patron_group.rebuild(ARRAY[%s]::bigint[]);', r.id)
                   ELSE pg_catalog.format('SELECT patron_group.rebuild(ARRAY(SELECT patron_id FROM patron_group.accounts WHERE group_id = %s));', r.id)
               END;
        RETURN NEXT;
    END LOOP;

    -- triggers, policies, row-level security and indexes that should be there
    FOR r IN SELECT s.attached_table, s.kind, m FROM patron_group.attachment_status s,
                    pg_catalog.unnest(s.missing) m LOOP
        subject := r.attached_table::text;
        detail := 'missing: ' || r.m;
        IF r.m LIKE 'mapping view %' THEN
            check_name := 'missing mapping'; severity := 'error';
            fix := pg_catalog.format('SELECT patron_group.detach(%L); then attach it again with the same mapping (see attachment_status.mapping)', r.attached_table);
        ELSIF r.m LIKE 'protection of %' THEN
            check_name := 'missing policy'; severity := 'error';
            fix := pg_catalog.format('SELECT patron_group.unprotect(%L); SELECT patron_group.protect(%L);', r.attached_table, r.attached_table);
        ELSIF r.m LIKE 'index on %' THEN
            check_name := 'missing index'; severity := 'warning';
            fix := 'CREATE INDEX ON ' || pg_catalog.substr(r.m, 10) || ';';
        ELSIF r.m LIKE 'barcode index %' THEN
            check_name := 'missing index'; severity := 'warning';
            fix := pg_catalog.format('SELECT patron_group.detach(%L); then attach the table again with the same mapping (see attachment_status.mapping)', r.attached_table);
        ELSIF r.m LIKE 'policy %' OR r.m LIKE 'row-level security %' THEN
            check_name := 'missing policy'; severity := 'error';
            fix := pg_catalog.format('SELECT patron_group.unprotect(%L); SELECT patron_group.protect(%L);', r.attached_table, r.attached_table);
        ELSIF r.m LIKE '% (disabled)' THEN
            check_name := 'disabled trigger'; severity := 'error';
            fix := pg_catalog.format('ALTER TABLE %s ENABLE TRIGGER %s; then SELECT patron_group.rebuild(); to count what it missed',
                                     pg_catalog.split_part(r.m, ' ', 4), pg_catalog.split_part(r.m, ' ', 2));
        ELSE
            check_name := 'missing trigger'; severity := 'error';
            fix := pg_catalog.format('SELECT patron_group.alter_attachment(%L);  -- makes the triggers the table''s tree needs, and recounts', r.attached_table);
        END IF;
        RETURN NEXT;
    END LOOP;

    -- consents past their end date, still recorded as given
    FOR r IN SELECT patron_id, 'circulations' AS kind, share_circulations_until AS until
               FROM patron_group.accounts
              WHERE share_circulations AND share_circulations_until <= pg_catalog.statement_timestamp()
             UNION ALL
             SELECT patron_id, 'bills', share_bills_until
               FROM patron_group.accounts
              WHERE share_bills AND share_bills_until <= pg_catalog.statement_timestamp()
             ORDER BY 1, 2 LOOP
        check_name := 'expired consent'; severity := 'notice';
        subject := 'patron ' || r.patron_id;
        detail := pg_catalog.format('consent to share %s ended at %s; leads no longer see them, but the flag is still set', r.kind, r.until);
        fix := pg_catalog.format('SELECT patron_group.set_consent(%s, %L, false, reason => ''expired'');', r.patron_id, r.kind);
        RETURN NEXT;
    END LOOP;

    -- accounts in a group that does not exist
    FOR r IN SELECT a.patron_id, a.group_id FROM patron_group.accounts a
              WHERE a.group_id IS NOT NULL
                AND NOT EXISTS (SELECT FROM patron_group.groups g WHERE g.group_id = a.group_id)
              ORDER BY 1 LOOP
        check_name := 'missing group'; severity := 'error';
        subject := 'patron ' || r.patron_id;
        detail := pg_catalog.format('patron %s is in group %s, which does not exist', r.patron_id, r.group_id);
        fix := pg_catalog.format('SELECT patron_group.remove_from_group(%s, reason => ''group missing'');', r.patron_id);
        RETURN NEXT;
    END LOOP;

    -- groups of several patrons with no lead
    FOR r IN SELECT group_id, member_count FROM patron_group.groups
              WHERE member_count >= 2 AND lead_count = 0 ORDER BY group_id LOOP
        check_name := 'group without lead'; severity := 'notice';
        subject := 'group ' || r.group_id;
        detail := pg_catalog.format('%s members and no lead: nobody can see the group''s loans and bills from the catalogue', r.member_count);
        fix := pg_catalog.format('SELECT patron_group.set_lead(<patron_id of a member of group %s>);', r.group_id);
        RETURN NEXT;
    END LOOP;

    -- accounts and patrons out of step (the patron table's triggers were
    -- disabled or bypassed)
    IF pmap.relid IS NOT NULL THEN
        FOR r IN EXECUTE pg_catalog.format(
                'SELECT a.patron_id FROM patron_group.accounts a WHERE NOT EXISTS '
                '(SELECT FROM %s p WHERE p.%I OPERATOR(pg_catalog.=) a.patron_id) ORDER BY 1',
                pmap.relid, pmap.id_column) LOOP
            check_name := 'account without patron'; severity := 'warning';
            subject := 'patron ' || r.patron_id;
            detail := pg_catalog.format('the account of patron %s remains but the patron is no longer in %s', r.patron_id, pmap.relid);
            fix := pg_catalog.format('DELETE FROM patron_group.accounts WHERE patron_id = %s;  -- as a superuser; the group''s counts and the history follow', r.patron_id);
            RETURN NEXT;
        END LOOP;
        FOR r IN EXECUTE pg_catalog.format(
                'SELECT p.%I::bigint AS patron_id FROM %s p WHERE NOT EXISTS '
                '(SELECT FROM patron_group.accounts a WHERE a.patron_id OPERATOR(pg_catalog.=) p.%I) ORDER BY 1',
                pmap.id_column, pmap.relid, pmap.id_column) LOOP
            check_name := 'patron without account'; severity := 'warning';
            subject := 'patron ' || r.patron_id;
            detail := pg_catalog.format('patron %s of %s has no account, so cannot be grouped', r.patron_id, pmap.relid);
            fix := pg_catalog.format('INSERT INTO patron_group.accounts (patron_id) VALUES (%s);  -- as a superuser; then SELECT patron_group.rebuild(ARRAY[%s]::bigint[]);', r.patron_id, r.patron_id);
            RETURN NEXT;
        END LOOP;
    END IF;

    -- something on accounts or groups that an update of the totals concerns
    SELECT patron_group.direct_refusal() AS why INTO r;
    IF r.why IS NOT NULL THEN
        check_name := 'totals through SQL'; severity := 'notice';
        subject := pg_catalog.split_part(r.why, ':', 1);
        detail := pg_catalog.format('totals are correct, but written through SQL, which costs more per checkout: %s', r.why);
        fix := 'drop what was added to the table, or keep it and accept the cost';
        RETURN NEXT;
    END IF;
END
$$;

-- ===========================================================================
-- Group limits: changing them is a privilege of its own, and every change
-- is in the history
-- ===========================================================================

ALTER TABLE @extschema@.history DROP CONSTRAINT history_action_check;
ALTER TABLE @extschema@.history ADD CONSTRAINT history_action_check
    CHECK (action IN ('join', 'leave', 'move', 'clone', 'delete',
                      'lead_on', 'lead_off', 'label',
                      'consent_on', 'consent_off',
                      'limit_override', 'limits_set', 'limits_cleared'));

CREATE OR REPLACE FUNCTION @extschema@.set_limits(group_id bigint,
    max_balance_owed numeric DEFAULT NULL,
    max_items_out bigint DEFAULT NULL,
    max_items_overdue bigint DEFAULT NULL,
    max_items_lost bigint DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_set_limits'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.set_limits(bigint, numeric, bigint, bigint, bigint) IS
'Set the limits of a group (group_id NULL: the default for every group); all four are replaced, NULL meaning none (default) or the default (group); recorded in the history.  For roles given grant_supervisor()';

CREATE OR REPLACE FUNCTION @extschema@.clear_limits(group_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_clear_limits'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.clear_limits(bigint) IS
'Remove a group''s own limits (it follows the default again), or the default (group_id NULL); true when there was something to remove; recorded in the history.  For roles given grant_supervisor()';

-- 1.1's grant_staff() gave set_limits and clear_limits to staff: take them
-- back (grant_supervisor() gives them now)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::pg_catalog.regrole AS role
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid IN ('@extschema@.set_limits(bigint, numeric, bigint, bigint, bigint)'::pg_catalog.regprocedure,
                              '@extschema@.clear_limits(bigint)'::pg_catalog.regprocedure)
                AND a.grantee <> 0 AND a.grantee <> p.proowner
              ORDER BY 1 LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION @extschema@.set_limits(bigint, numeric, bigint, bigint, bigint), '
                                  '@extschema@.clear_limits(bigint) FROM %s', r.role);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.staff_privileges(staff_role regrole, give boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    verb text := CASE WHEN give THEN 'GRANT' ELSE 'REVOKE' END;
    dir  text := CASE WHEN give THEN 'TO' ELSE 'FROM' END;
    fn   regprocedure;
BEGIN
    IF staff_role IS NULL OR give IS NULL THEN
        RAISE EXCEPTION 'staff_role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF give THEN
        EXECUTE format('GRANT USAGE ON SCHEMA patron_group TO %s', staff_role);
    END IF;
    EXECUTE format('%s SELECT ON patron_group.attachments, patron_group.groups,
                    patron_group.accounts, patron_group.history,
                    patron_group.group_summary, patron_group.member_summary,
                    patron_group.membership_history, patron_group.attachment_status,
                    patron_group.limits %s %s',
                   verb, dir, staff_role);
    FOREACH fn IN ARRAY ARRAY[
            'patron_group.resolve_barcode(text)',
            'patron_group.find_patron(text)',
            'patron_group.move_to_group(bigint[], bigint, text)',
            'patron_group.move_to_group(bigint, bigint, text)',
            'patron_group.remove_from_group(bigint, text)',
            'patron_group.clone_patron(bigint, jsonb, text)',
            'patron_group.set_lead(bigint, boolean, text)',
            'patron_group.set_group_label(bigint, text, text)',
            'patron_group.group_members(bigint)',
            'patron_group.set_consent(bigint, text, boolean, timestamptz, text)',
            'patron_group.patron_details(bigint)',
            'patron_group.expected_triggers()',
            'patron_group.health()',
            'patron_group.checkout_allowed(bigint)',
            'patron_group.payment_plan(bigint, numeric, bigint)']::regprocedure[]
    LOOP
        EXECUTE format('%s EXECUTE ON FUNCTION %s %s %s', verb, fn, dir, staff_role);
    END LOOP;
    IF NOT give THEN
        EXECUTE format('REVOKE USAGE ON SCHEMA patron_group FROM %s', staff_role);
    END IF;
END
$$;

-- Supervisors: change limits and let a refused checkout through
CREATE FUNCTION @extschema@.supervisor_privileges(supervisor_role regrole, give boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF supervisor_role IS NULL OR give IS NULL THEN
        RAISE EXCEPTION 'supervisor_role must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF give THEN
        EXECUTE format('GRANT USAGE ON SCHEMA patron_group TO %s', supervisor_role);
    END IF;
    EXECUTE format('%s EXECUTE ON FUNCTION patron_group.set_limits(bigint, numeric, bigint, bigint, bigint), '
                   'patron_group.clear_limits(bigint), patron_group.override_limits(text) %s %s',
                   CASE WHEN give THEN 'GRANT' ELSE 'REVOKE' END,
                   CASE WHEN give THEN 'TO' ELSE 'FROM' END, supervisor_role);
    EXECUTE format('%s SELECT ON patron_group.limits %s %s',
                   CASE WHEN give THEN 'GRANT' ELSE 'REVOKE' END,
                   CASE WHEN give THEN 'TO' ELSE 'FROM' END, supervisor_role);
    IF NOT give THEN
        EXECUTE format('REVOKE USAGE ON SCHEMA patron_group FROM %s', supervisor_role);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.supervisor_privileges(regrole, boolean) IS
'The privileges of a supervisor role, given (true) or taken back (false); used by grant_supervisor and revoke_supervisor';

CREATE FUNCTION @extschema@.grant_supervisor(supervisor_role regrole)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT patron_group.supervisor_privileges(supervisor_role, true);
END;
COMMENT ON FUNCTION @extschema@.grant_supervisor(regrole) IS
'Give a role the right to change group limits (set_limits, clear_limits) and to let a refused checkout through (override_limits)';

CREATE FUNCTION @extschema@.revoke_supervisor(supervisor_role regrole)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT patron_group.supervisor_privileges(supervisor_role, false);
END;
COMMENT ON FUNCTION @extschema@.revoke_supervisor(regrole) IS
'Take back what grant_supervisor gave';

-- ===========================================================================
-- DDL guards
-- ===========================================================================

-- DROP SCHEMA patron_group CASCADE drops the extension too, and DROP OWNED
-- BY its owner its objects: both are refused while tables are attached, as
-- DROP EXTENSION is.  And the reporting views read the attached tables
-- (through their mapping views), so a DROP ... CASCADE of an attached
-- table, of its schema or of a column or function a mapping reads would
-- drop the extension with them: the library's hook refuses that, and
-- the trigger fires on every DDL command so that the library is loaded
-- before the command runs.
DROP EVENT TRIGGER patron_group_drop_guard;
CREATE EVENT TRIGGER patron_group_drop_guard ON ddl_command_start
    EXECUTE FUNCTION @extschema@.drop_guard();
COMMENT ON FUNCTION @extschema@.drop_guard() IS
'Refuses DROP EXTENSION patron_group, DROP SCHEMA patron_group and DROP OWNED BY its owner while library system tables are attached, and any statement that would drop a mapping view or the extension as a consequence';

-- A table that becomes a child or a partition of a protected table is
-- protected before its statement commits.
CREATE FUNCTION @extschema@.ddl_watch()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'pg_ddl_watch'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.ddl_watch() IS
'When a table joins or leaves the tree of an attached table or of a transaction table: the triggers and protection follow, and the totals are recounted if rows came or went';
CREATE EVENT TRIGGER patron_group_ddl_watch ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION @extschema@.ddl_watch();
CREATE EVENT TRIGGER patron_group_drop_watch ON sql_drop
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION @extschema@.ddl_watch();

REVOKE ALL ON FUNCTION @extschema@.supervisor_privileges(regrole, boolean),
    @extschema@.grant_supervisor(regrole), @extschema@.revoke_supervisor(regrole),
    @extschema@.ddl_watch() FROM PUBLIC;

-- ===========================================================================
-- Changing a mapping in place, and every backend told when it changes
-- ===========================================================================

-- alter_attachment(): what is given changes, what is NULL stays.
CREATE FUNCTION @extschema@.alter_attachment(attached_table regclass,
    patron_column name DEFAULT NULL,
    barcode_column name DEFAULT NULL,
    name_columns name[] DEFAULT NULL,
    clone_columns name[] DEFAULT NULL,
    active_when text DEFAULT NULL,
    due_column name DEFAULT NULL,
    open_when text DEFAULT NULL,
    lost_when text DEFAULT NULL,
    amount_column name DEFAULT NULL,
    counts_when text DEFAULT NULL,
    via regclass DEFAULT NULL,
    via_id_column name DEFAULT NULL,
    via_patron_column name DEFAULT NULL,
    deleted_when text DEFAULT NULL,
    claims_returned_when text DEFAULT NULL,
    long_overdue_when text DEFAULT NULL,
    renewal_when text DEFAULT NULL,
    out_includes text[] DEFAULT NULL,
    outstanding_column name DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_alter_attachment'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.alter_attachment(regclass, name, name, name[], name[], text, name, text, text, name, text, regclass, name, name, text, text, text, text, text[], name) IS
'Change how an attached table is read (a condition, a column, the transaction table of money) without detaching it; the totals it affects are recounted';

-- Each backend keeps what is attached until it changes: any write to
-- attachments, the owner's own included, tells every backend to read it again.
CREATE FUNCTION @extschema@.attachments_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pg_attachments_changed'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.attachments_changed() IS
'Tells every backend that the attachments changed, so that none counts with an old mapping';
CREATE TRIGGER attachments_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.attachments
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.attachments_changed();
REVOKE ALL ON FUNCTION @extschema@.alter_attachment(regclass, name, name, name[], name[], text, name, text, text,
    name, text, regclass, name, name, text, text, text, text, text[], name), @extschema@.attachments_changed() FROM PUBLIC;

-- The text columns of a condition are read only from a dump of an older
-- version: setting one is refused rather than silently ignored.
CREATE FUNCTION @extschema@.attachments_old_columns()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'the conditions of an attachment are not stored in patron_group.attachments since 1.2'
        USING ERRCODE = 'feature_not_supported',
              DETAIL = 'They are the expressions of the table''s mapping view.',
              HINT = pg_catalog.format('Change one with SELECT patron_group.alter_attachment(%L, ...);', NEW.relid);
END
$$;
COMMENT ON FUNCTION @extschema@.attachments_old_columns() IS
'Refuses an UPDATE that sets the condition columns of patron_group.attachments, which 1.2 does not read';
CREATE TRIGGER attachments_old_columns
    BEFORE UPDATE OF condition, lost_condition ON @extschema@.attachments
    FOR EACH ROW WHEN (NEW.condition IS NOT NULL OR NEW.lost_condition IS NOT NULL)
    EXECUTE FUNCTION @extschema@.attachments_old_columns();
REVOKE ALL ON FUNCTION @extschema@.attachments_old_columns() FROM PUBLIC;

-- limits has no primary key (the default's group_id is NULL): a publication
-- of it needs the whole row as its replica identity, or the publisher
-- refuses set_limits() and every removal of a group's last member.
ALTER TABLE @extschema@.limits REPLICA IDENTITY FULL;

-- 1.1 protected the attached tables only: protect their children and
-- partitions and the transaction tables behind protected money now.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT relid FROM @extschema@.attachments a WHERE protected
               AND pg_catalog.to_regclass(a.relid::text) IS NOT NULL ORDER BY relid::oid LOOP
        PERFORM @extschema@.unprotect(t);
        PERFORM @extschema@.protect(t);
    END LOOP;
END
$$;

-- "What changed last month" reads the history by time: an index for it.
CREATE INDEX history_happened_at ON @extschema@.history (happened_at);

-- The reporting views are plain SQL over the attached tables from 1.2,
-- made from the mapping whenever the attachments change (attachments_changed):
-- a statement on attachments, even one that changes no row, makes them now.
UPDATE @extschema@.attachments SET relid = relid WHERE false;
