/* patron_group 1.0 -> 1.1 */

\echo Use "ALTER EXTENSION patron_group UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Group limits and paying for the group
-- ---------------------------------------------------------------------------

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

-- grant_staff and revoke_staff cover the limit functions too.
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
                    patron_group.accounts, patron_group.history, patron_group.limits %s %s',
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
