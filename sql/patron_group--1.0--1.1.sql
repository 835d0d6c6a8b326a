/* patron_group 1.0 -> 1.1: upgrade script */

\echo Use "ALTER EXTENSION patron_group UPDATE" to load this file. \quit

-- ===========================================================================
-- Reporting views and maintenance
-- ===========================================================================

-- The barcode index is recorded by name: pg_restore loads this table's rows
-- before it creates the library system's indexes, so a regclass could not be
-- restored.
ALTER TABLE @extschema@.attachments ADD COLUMN barcode_index_name text;
UPDATE @extschema@.attachments a
   SET barcode_index_name = (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                               FROM pg_catalog.pg_class c
                               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                              WHERE c.oid OPERATOR(pg_catalog.=) a.barcode_index::pg_catalog.oid)
 WHERE a.barcode_index IS NOT NULL;
ALTER TABLE @extschema@.attachments DROP COLUMN barcode_index;
ALTER TABLE @extschema@.attachments RENAME COLUMN barcode_index_name TO barcode_index;
COMMENT ON COLUMN @extschema@.attachments.barcode_index IS
'The expression index on normalize_barcode() that attaching created, by qualified name';

-- Dump the identity sequences with the tables, so that a restored database
-- goes on numbering groups and history events after the last one.
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.groups', 'group_id'), '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.history', 'event_id'), '');

-- A dump taken under 1.0 did not carry the sequences: after it is restored
-- the numbering would start again at 1.  Each statement that adds groups or
-- history events brings its sequence up to the largest id first, so the
-- restore's own COPY sets it right and later inserts never collide.
CREATE FUNCTION @extschema@.sequence_catch_up()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq text := pg_catalog.pg_get_serial_sequence(
                    pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), TG_ARGV[0]);
    top bigint;
    last bigint;
BEGIN
    EXECUTE pg_catalog.format('SELECT max(%I) FROM %I.%I', TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME)
       INTO top;
    EXECUTE pg_catalog.format('SELECT last_value FROM %s', seq) INTO last;
    IF top > last THEN
        PERFORM pg_catalog.setval(seq, top);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.sequence_catch_up() IS
'Keeps the numbering of groups and history events ahead of the rows, after a restore of a dump made under 1.0';
CREATE TRIGGER groups_sequence_catch_up
    AFTER INSERT ON @extschema@.groups
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sequence_catch_up('group_id');
CREATE TRIGGER history_sequence_catch_up
    AFTER INSERT ON @extschema@.history
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sequence_catch_up('event_id');

CREATE FUNCTION @extschema@.patron_details(patron_id bigint,
    OUT barcode text, OUT display_name text, OUT items_overdue bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_patron_details'
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.patron_details(bigint) IS
'A patron''s barcode and display name from the attached tables, and their overdue loans counted now; read with the caller''s rights';

-- ---------------------------------------------------------------------------
-- Views.  security_invoker: whoever reads them needs the rights on what they
-- read, and row-level security applies to them.
-- ---------------------------------------------------------------------------

CREATE VIEW @extschema@.group_summary WITH (security_invoker = true) AS
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
       g.amount_billed - g.amount_paid AS balance_owed
  FROM @extschema@.groups g;
COMMENT ON VIEW @extschema@.group_summary IS
'One row per patron group with its members, leads and circulation and billing totals';
COMMENT ON COLUMN @extschema@.group_summary.group_id IS 'The group''s id';
COMMENT ON COLUMN @extschema@.group_summary.label IS 'The group''s label, such as a family name (NULL if none was set)';
COMMENT ON COLUMN @extschema@.group_summary.created_at IS 'When the group was created';
COMMENT ON COLUMN @extschema@.group_summary.member_count IS 'Number of patrons in the group';
COMMENT ON COLUMN @extschema@.group_summary.lead_count IS 'Number of lead patrons in the group';
COMMENT ON COLUMN @extschema@.group_summary.items_out IS 'Open loans of all members, lost ones included';
COMMENT ON COLUMN @extschema@.group_summary.items_overdue IS 'Open loans of all members that are not lost and were due before now (counted when read)';
COMMENT ON COLUMN @extschema@.group_summary.items_lost IS 'Open loans of all members marked lost';
COMMENT ON COLUMN @extschema@.group_summary.amount_billed IS 'Sum of all members'' charges that count (not voided)';
COMMENT ON COLUMN @extschema@.group_summary.amount_paid IS 'Sum of all members'' payments that count (not voided)';
COMMENT ON COLUMN @extschema@.group_summary.balance_owed IS 'amount_billed minus amount_paid';

CREATE VIEW @extschema@.member_summary WITH (security_invoker = true) AS
SELECT a.patron_id,
       d.barcode,
       d.display_name,
       a.group_id,
       g.label AS group_label,
       a.is_lead,
       a.share_circulations,
       a.share_circulations_until,
       a.share_circulations AND (a.share_circulations_until IS NULL
           OR a.share_circulations_until > pg_catalog.now()) AS circulations_shared_now,
       a.share_bills,
       a.share_bills_until,
       a.share_bills AND (a.share_bills_until IS NULL
           OR a.share_bills_until > pg_catalog.now()) AS bills_shared_now,
       a.items_out,
       d.items_overdue,
       a.items_lost,
       a.amount_billed,
       a.amount_paid,
       a.amount_billed - a.amount_paid AS balance_owed
  FROM @extschema@.accounts a
  LEFT JOIN @extschema@.groups g ON g.group_id = a.group_id
  CROSS JOIN LATERAL @extschema@.patron_details(a.patron_id) d;
COMMENT ON VIEW @extschema@.member_summary IS
'One row per patron of the attached patron table: group, lead flag, consents and the patron''s totals';
COMMENT ON COLUMN @extschema@.member_summary.patron_id IS 'The patron''s id in the library system';
COMMENT ON COLUMN @extschema@.member_summary.barcode IS 'The patron''s barcode (from the patron table, or an active card)';
COMMENT ON COLUMN @extschema@.member_summary.display_name IS 'The patron''s name as "Family, Given Other"';
COMMENT ON COLUMN @extschema@.member_summary.group_id IS 'The patron''s group (NULL if in none)';
COMMENT ON COLUMN @extschema@.member_summary.group_label IS 'The label of the patron''s group';
COMMENT ON COLUMN @extschema@.member_summary.is_lead IS 'Whether the patron is a lead of their group';
COMMENT ON COLUMN @extschema@.member_summary.share_circulations IS 'Consent recorded: the group''s leads may see this patron''s loans';
COMMENT ON COLUMN @extschema@.member_summary.share_circulations_until IS 'When that consent ends (NULL: until withdrawn)';
COMMENT ON COLUMN @extschema@.member_summary.circulations_shared_now IS 'Whether the loans consent is in force now (given and not expired)';
COMMENT ON COLUMN @extschema@.member_summary.share_bills IS 'Consent recorded: the group''s leads may see this patron''s bills and payments';
COMMENT ON COLUMN @extschema@.member_summary.share_bills_until IS 'When that consent ends (NULL: until withdrawn)';
COMMENT ON COLUMN @extschema@.member_summary.bills_shared_now IS 'Whether the bills consent is in force now (given and not expired)';
COMMENT ON COLUMN @extschema@.member_summary.items_out IS 'The patron''s open loans, lost ones included';
COMMENT ON COLUMN @extschema@.member_summary.items_overdue IS 'Open loans not lost and due before now (counted when read)';
COMMENT ON COLUMN @extschema@.member_summary.items_lost IS 'Open loans marked lost';
COMMENT ON COLUMN @extschema@.member_summary.amount_billed IS 'The patron''s charges that count (not voided)';
COMMENT ON COLUMN @extschema@.member_summary.amount_paid IS 'The patron''s payments that count (not voided)';
COMMENT ON COLUMN @extschema@.member_summary.balance_owed IS 'amount_billed minus amount_paid';

CREATE VIEW @extschema@.membership_history WITH (security_invoker = true) AS
SELECT h.event_id,
       h.happened_at,
       h.action,
       h.patron_id,
       d.barcode,
       d.display_name,
       h.from_group,
       fg.label AS from_group_label,
       h.to_group,
       tg.label AS to_group_label,
       h.db_role,
       h.app_user,
       h.reason,
       h.detail
  FROM @extschema@.history h
  LEFT JOIN LATERAL @extschema@.patron_details(h.patron_id) d ON true
  LEFT JOIN @extschema@.groups fg ON fg.group_id = h.from_group
  LEFT JOIN @extschema@.groups tg ON tg.group_id = h.to_group;
COMMENT ON VIEW @extschema@.membership_history IS
'Every membership, lead and consent change, with the patron''s barcode and name and the groups'' labels';
COMMENT ON COLUMN @extschema@.membership_history.event_id IS 'Order of the events';
COMMENT ON COLUMN @extschema@.membership_history.happened_at IS 'When it happened';
COMMENT ON COLUMN @extschema@.membership_history.action IS 'join, leave, move, clone, delete, lead_on, lead_off, label, consent_on or consent_off';
COMMENT ON COLUMN @extschema@.membership_history.patron_id IS 'The patron concerned (NULL for a group label change)';
COMMENT ON COLUMN @extschema@.membership_history.barcode IS 'The patron''s barcode now (NULL once the patron is deleted)';
COMMENT ON COLUMN @extschema@.membership_history.display_name IS 'The patron''s name now (NULL once the patron is deleted)';
COMMENT ON COLUMN @extschema@.membership_history.from_group IS 'The group left';
COMMENT ON COLUMN @extschema@.membership_history.from_group_label IS 'Its label now (NULL once the group is gone)';
COMMENT ON COLUMN @extschema@.membership_history.to_group IS 'The group joined';
COMMENT ON COLUMN @extschema@.membership_history.to_group_label IS 'Its label now (NULL once the group is gone)';
COMMENT ON COLUMN @extschema@.membership_history.db_role IS 'The database role that made the change';
COMMENT ON COLUMN @extschema@.membership_history.app_user IS 'The library system''s user, from the setting patron_group.application_user';
COMMENT ON COLUMN @extschema@.membership_history.reason IS 'The reason given by staff';
COMMENT ON COLUMN @extschema@.membership_history.detail IS 'For consents: which kind, and until when';

CREATE VIEW @extschema@.attachment_status WITH (security_invoker = true) AS
WITH t AS (
    SELECT a.relid, a.kind, a.protected, a.attached_at, a.attached_by, a.via_relid,
           pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
               'id_column', a.id_column, 'patron_column', a.patron_column,
               'barcode_column', a.barcode_column, 'name_columns', a.name_columns,
               'clone_columns', a.clone_columns, 'condition', a.condition,
               'due_column', a.due_column, 'lost_condition', a.lost_condition,
               'money_kind', a.money_kind, 'amount_column', a.amount_column,
               'via', a.via_relid::text, 'via_id_column', a.via_id_column,
               'via_patron_column', a.via_patron_column)) AS mapping,
           CASE a.kind
               WHEN 'patrons' THEN ARRAY['patron_group_insert', 'patron_group_delete',
                                         'patron_group_update', 'patron_group_truncate']
               WHEN 'cards' THEN ARRAY[]::text[]
               ELSE ARRAY['patron_group_totals_insert', 'patron_group_totals_update',
                          'patron_group_totals_delete', 'patron_group_totals_truncate']
           END AS expected_triggers,
           CASE WHEN a.via_relid IS NOT NULL
               THEN ARRAY['patron_group_via_delete', 'patron_group_via_update',
                          'patron_group_via_truncate']
               ELSE ARRAY[]::text[] END AS expected_via_triggers,
           CASE WHEN a.protected
               THEN ARRAY['patron_group_everyone', 'patron_group_patron_read',
                          'patron_group_patron_insert', 'patron_group_patron_update',
                          'patron_group_patron_delete']
               ELSE ARRAY[]::text[] END AS expected_policies,
           a.barcode_index,
           CASE WHEN a.kind IN ('circulations', 'money') THEN a.patron_column END AS indexed_column
      FROM @extschema@.attachments a
), s AS (
    SELECT t.*,
           ARRAY(SELECT tg.tgname::text FROM pg_catalog.pg_trigger tg
                  WHERE tg.tgrelid = t.relid AND tg.tgname::text = ANY (t.expected_triggers)
                    AND tg.tgenabled <> 'D' ORDER BY 1) AS triggers,
           ARRAY(SELECT tg.tgname::text FROM pg_catalog.pg_trigger tg
                  WHERE tg.tgrelid IN (t.relid, t.via_relid)
                    AND tg.tgname::text = ANY (t.expected_triggers || t.expected_via_triggers)
                    AND tg.tgenabled = 'D') AS disabled_triggers,
           ARRAY(SELECT tg.tgname::text FROM pg_catalog.pg_trigger tg
                  WHERE tg.tgrelid = t.via_relid AND tg.tgname::text = ANY (t.expected_via_triggers)
                    AND tg.tgenabled <> 'D' ORDER BY 1) AS via_triggers,
           ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
                  WHERE p.polrelid = t.relid AND p.polname::text LIKE 'patron\_group\_%' ORDER BY 1) AS policies,
           (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = t.relid) AS row_security,
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
       ARRAY(SELECT 'trigger ' || e || ' on ' || s.relid::text
                    || CASE WHEN e = ANY (s.disabled_triggers) THEN ' (disabled)' ELSE ' (dropped)' END
               FROM pg_catalog.unnest(s.expected_triggers) e WHERE e <> ALL (s.triggers)
             UNION ALL
             SELECT 'trigger ' || e || ' on ' || s.via_relid::text
                    || CASE WHEN e = ANY (s.disabled_triggers) THEN ' (disabled)' ELSE ' (dropped)' END
               FROM pg_catalog.unnest(s.expected_via_triggers) e WHERE e <> ALL (s.via_triggers)
             UNION ALL
             SELECT 'policy ' || e || ' on ' || s.relid::text
               FROM pg_catalog.unnest(s.expected_policies) e WHERE e <> ALL (s.policies)
             UNION ALL
             SELECT 'row-level security on ' || s.relid::text WHERE s.protected AND NOT s.row_security
             UNION ALL
             SELECT 'barcode index ' || s.barcode_index WHERE s.barcode_index IS NOT NULL
                    AND s.barcode_index_found IS NULL
             UNION ALL
             SELECT 'index on ' || s.relid::text || ' (' || pg_catalog.quote_ident(s.indexed_column) || ')'
              WHERE s.indexed_column IS NOT NULL AND s.patron_index IS NULL) AS missing
  FROM s;
COMMENT ON VIEW @extschema@.attachment_status IS
'Each attached library system table: how it is mapped, the triggers, policies and indexes patron_group keeps on it, and what is missing';
COMMENT ON COLUMN @extschema@.attachment_status.attached_table IS 'The attached table';
COMMENT ON COLUMN @extschema@.attachment_status.kind IS 'patrons, cards, circulations or money';
COMMENT ON COLUMN @extschema@.attachment_status.mapping IS 'The columns and conditions given when attaching, as JSON';
COMMENT ON COLUMN @extschema@.attachment_status.attached_at IS 'When the table was attached';
COMMENT ON COLUMN @extschema@.attachment_status.attached_by IS 'The role that attached it';
COMMENT ON COLUMN @extschema@.attachment_status.triggers IS 'patron_group''s triggers present and enabled on the table (and on its transaction table, for money named by a transaction)';
COMMENT ON COLUMN @extschema@.attachment_status.policies IS 'patron_group''s row-level security policies on the table (after protect())';
COMMENT ON COLUMN @extschema@.attachment_status.row_security IS 'Whether row-level security is enabled on the table';
COMMENT ON COLUMN @extschema@.attachment_status.patron_or_barcode_index IS 'The barcode index (patrons, cards) or an index led by the patron column (circulations, money)';
COMMENT ON COLUMN @extschema@.attachment_status.missing IS 'What should be there and is not: a dropped or disabled trigger, a dropped policy, row-level security switched off, a missing index (empty when all is well)';

-- ---------------------------------------------------------------------------
-- Maintenance
-- ---------------------------------------------------------------------------

CREATE FUNCTION @extschema@.health(
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
        IF r.m LIKE 'index on %' THEN
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
            fix := pg_catalog.format('SELECT patron_group.detach(%L); then attach it again with the same mapping (see attachment_status.mapping): attaching recounts its totals', r.attached_table);
        END IF;
        RETURN NEXT;
    END LOOP;

    -- consents past their end date, still recorded as given
    FOR r IN SELECT patron_id, 'circulations' AS kind, share_circulations_until AS until
               FROM patron_group.accounts
              WHERE share_circulations AND share_circulations_until <= pg_catalog.now()
             UNION ALL
             SELECT patron_id, 'bills', share_bills_until
               FROM patron_group.accounts
              WHERE share_bills AND share_bills_until <= pg_catalog.now()
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
END
$$;
COMMENT ON FUNCTION @extschema@.health() IS
'Everything that needs a DBA''s attention, each with how to fix it: drift, missing triggers, policies and indexes, expired consents, groups without a lead, accounts and patrons out of step; no rows when all is well';

-- detach everything, in the order the attachments depend on each other
CREATE FUNCTION @extschema@.detach_all()
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    n integer := 0;
BEGIN
    FOR t IN SELECT relid FROM patron_group.attachments a WHERE protected
               AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = a.relid::oid)
             ORDER BY relid::oid LOOP
        PERFORM patron_group.unprotect(t);
    END LOOP;
    FOR t IN SELECT relid FROM patron_group.attachments
              ORDER BY CASE kind WHEN 'money' THEN 1 WHEN 'circulations' THEN 2
                                 WHEN 'cards' THEN 3 ELSE 4 END, relid::oid LOOP
        PERFORM patron_group.detach(t);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.detach_all() IS
'Detach every attached table (policies first), so that DROP EXTENSION leaves the library system''s tables as they were; returns how many were detached';

CREATE FUNCTION @extschema@.drop_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'pg_drop_guard'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.drop_guard() IS
'Refuses DROP EXTENSION patron_group while library system tables are attached';

CREATE EVENT TRIGGER patron_group_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION @extschema@.drop_guard();

-- ===========================================================================
-- Barcode normalizer
-- ===========================================================================

-- normalize_barcode() now strips invisible characters before folding as
-- well as after, and folds again what stripping brought together, so that
-- a normalized barcode normalizes to itself.  Barcodes with a control or
-- format character before a combining mark, or with a spacing diacritic,
-- normalize differently from 1.0: rebuild the expression indexes that hold
-- the 1.0 results.
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN SELECT pg_catalog.to_regclass(barcode_index) FROM @extschema@.attachments
                WHERE pg_catalog.to_regclass(barcode_index) IS NOT NULL ORDER BY relid::oid
    LOOP
        EXECUTE pg_catalog.format('REINDEX INDEX %s', idx);
    END LOOP;
END
$$;

-- ===========================================================================
-- Group limits and paying for the group
-- ===========================================================================

-- Limits on a group's figures.  The row with group_id NULL is the default for
-- every group; a group's own row overrides the default limit by limit (a NULL
-- column of a group's row means "the default").  A NULL in the default row
-- means no limit.
CREATE TABLE @extschema@.limits (
    group_id            bigint      REFERENCES @extschema@.groups ON DELETE CASCADE,
    max_balance_owed    numeric     CHECK (max_balance_owed >= 0),
    max_items_out       bigint      CHECK (max_items_out >= 0),
    max_items_overdue   bigint      CHECK (max_items_overdue >= 0),
    max_items_lost      bigint      CHECK (max_items_lost >= 0),
    set_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by              name        NOT NULL DEFAULT CURRENT_USER,
    CONSTRAINT limits_one_per_group UNIQUE NULLS NOT DISTINCT (group_id)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.limits', '');
COMMENT ON TABLE @extschema@.limits IS
'Group limits that block checkout: group_id NULL is the default for every group, a group''s row overrides it limit by limit';

-- A staff override is recorded in the history.
ALTER TABLE @extschema@.history DROP CONSTRAINT history_action_check;
ALTER TABLE @extschema@.history ADD CONSTRAINT history_action_check
    CHECK (action IN ('join', 'leave', 'move', 'clone', 'delete',
                      'lead_on', 'lead_off', 'label',
                      'consent_on', 'consent_off',
                      'limit_override'));

CREATE FUNCTION @extschema@.set_limits(group_id bigint,
    max_balance_owed numeric DEFAULT NULL,
    max_items_out bigint DEFAULT NULL,
    max_items_overdue bigint DEFAULT NULL,
    max_items_lost bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_balance_owed < 0 OR max_items_out < 0 OR max_items_overdue < 0
            OR max_items_lost < 0 THEN
        RAISE EXCEPTION 'a limit must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'NULL means no limit (in the default) or the default (for a group).';
    END IF;
    IF max_balance_owed = 'NaN'::numeric THEN
        RAISE EXCEPTION 'max_balance_owed must be a number'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_limits.group_id IS NOT NULL THEN
        -- lock the group so that it cannot disappear under the new row
        PERFORM FROM patron_group.groups g
            WHERE g.group_id OPERATOR(pg_catalog.=) set_limits.group_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'group % does not exist', set_limits.group_id
                USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    INSERT INTO patron_group.limits AS l (group_id, max_balance_owed, max_items_out,
            max_items_overdue, max_items_lost, set_by)
        VALUES (set_limits.group_id, set_limits.max_balance_owed, set_limits.max_items_out,
            set_limits.max_items_overdue, set_limits.max_items_lost, SESSION_USER)
        ON CONFLICT ON CONSTRAINT limits_one_per_group DO UPDATE
        SET max_balance_owed = EXCLUDED.max_balance_owed,
            max_items_out = EXCLUDED.max_items_out,
            max_items_overdue = EXCLUDED.max_items_overdue,
            max_items_lost = EXCLUDED.max_items_lost,
            set_at = pg_catalog.now(), set_by = EXCLUDED.set_by;
END
$$;
COMMENT ON FUNCTION @extschema@.set_limits(bigint, numeric, bigint, bigint, bigint) IS
'Set the limits of a group (group_id NULL: the default for every group); all four are replaced, NULL meaning none (default) or the default (group)';

CREATE FUNCTION @extschema@.clear_limits(group_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM patron_group.limits l
        WHERE l.group_id IS NOT DISTINCT FROM clear_limits.group_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION @extschema@.clear_limits(bigint) IS
'Remove a group''s own limits (it follows the default again), or the default (group_id NULL); true when there was something to remove';

CREATE FUNCTION @extschema@.checkout_allowed(patron_id bigint,
    OUT allowed boolean, OUT limit_name text, OUT figure numeric, OUT max_allowed numeric,
    OUT group_id bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_checkout_allowed'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 1
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.checkout_allowed(bigint) IS
'Whether the patron may borrow one more item now under the group limits: one row (allowed, nulls) or one row per exceeded limit (not allowed)';

CREATE FUNCTION @extschema@.override_limits(reason text)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_override_limits'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.override_limits(text) IS
'Let the next checkout statement of this transaction pass the group limits; recorded in the history when used.  Only for roles the DBA grants it to';

CREATE FUNCTION @extschema@.limits_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pg_limits_trigger'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.limits_trigger() IS
'Refuses new open loans of members of groups over a limit (enforce_limits)';

CREATE FUNCTION @extschema@.enforce_limits(circulation_table regclass, enabled boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF circulation_table IS NULL OR enabled IS NULL THEN
        RAISE EXCEPTION 'circulation_table and enabled must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM patron_group.attachments a
                   WHERE a.relid OPERATOR(pg_catalog.=) circulation_table
                     AND a.kind OPERATOR(pg_catalog.=) 'circulations') THEN
        RAISE EXCEPTION 'relation % is not an attached circulation table', circulation_table
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Attach it with patron_group.attach_circulations first.';
    END IF;
    -- The name sorts after patron_group_totals_insert: the limits are checked
    -- once the statement's loans are counted in the totals (and the account
    -- and group rows locked by the totals trigger).
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger t
               WHERE t.tgrelid OPERATOR(pg_catalog.=) circulation_table
                 AND t.tgname OPERATOR(pg_catalog.=) 'patron_group_totals_insert_limits') THEN
        EXECUTE format('DROP TRIGGER patron_group_totals_insert_limits ON %s',
                       circulation_table);
    END IF;
    IF enabled THEN
        EXECUTE format('CREATE TRIGGER patron_group_totals_insert_limits AFTER INSERT ON %s '
                       'REFERENCING NEW TABLE AS patron_group_new FOR EACH STATEMENT '
                       'EXECUTE FUNCTION patron_group.limits_trigger()', circulation_table);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.enforce_limits(regclass, boolean) IS
'Refuse (true) or stop refusing (false) new open loans in an attached circulation table for members of groups over a limit';

REVOKE ALL ON FUNCTION @extschema@.set_limits(bigint, numeric, bigint, bigint, bigint),
    @extschema@.clear_limits(bigint), @extschema@.checkout_allowed(bigint),
    @extschema@.override_limits(text), @extschema@.limits_trigger(),
    @extschema@.enforce_limits(regclass, boolean) FROM PUBLIC;

CREATE FUNCTION @extschema@.payment_plan(patron_id bigint, amount numeric,
    first_member bigint DEFAULT NULL,
    OUT transaction_table regclass, OUT transaction_id bigint, OUT member_id bigint,
    OUT open_balance numeric, OUT apply numeric)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_payment_plan'
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.payment_plan(bigint, numeric, bigint) IS
'How a payment for the patron''s group would be spread over its open balances, oldest first or a chosen member first: rows for the library system''s payment table; writes nothing';
REVOKE ALL ON FUNCTION @extschema@.payment_plan(bigint, numeric, bigint) FROM PUBLIC;

-- ===========================================================================
-- Privileges
-- ===========================================================================

-- staff also read the views and the limits, run health(), the details behind
-- the views, and the limit and payment plan functions
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
            'patron_group.health()',
            'patron_group.set_limits(bigint, numeric, bigint, bigint, bigint)',
            'patron_group.clear_limits(bigint)',
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

-- No grants here: a GRANT made inside ALTER EXTENSION would become part of
-- the extension's initial privileges, which pg_dump does not write, so a
-- restored database would lose it.  Staff roles get the new views and
-- functions from grant_staff(), run again after the update.
REVOKE ALL ON FUNCTION @extschema@.patron_details(bigint), @extschema@.health(),
    @extschema@.sequence_catch_up(),
    @extschema@.detach_all(), @extschema@.drop_guard() FROM PUBLIC;
