-- patron_group 1.2 -> 1.3: the library system's own objects never run with
-- the extension owner's rights (the C library: every statement on its
-- tables runs as their owner, security-restricted); a token never travels
-- again (token_nonce() and act_as_proof()); patron-facing sessions run
-- procedures in one transaction; health() reports what a patron-facing role
-- can read around row-level security.
\echo Use "ALTER EXTENSION patron_group UPDATE TO '1.3'" to load this file. \quit

-- ===========================================================================
-- Tokens: a proof answering a nonce of this transaction, never the token
-- ===========================================================================

CREATE FUNCTION @extschema@.token_nonce()
RETURNS text
AS 'MODULE_PATHNAME', 'pg_token_nonce'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.token_nonce() IS
'A random nonce for this transaction, for act_as_proof(); the last one taken counts, and its first use spends it';

CREATE FUNCTION @extschema@.act_as_proof(patron_id bigint, expires bigint, proof text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_act_as_proof'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.act_as_proof(bigint, bigint, text) IS
'Act for the patron of a token for the rest of this transaction, proving the token is held: proof is HMAC-SHA256 keyed with the token over token_nonce(), in hex; expires is the token''s (its third field); returns the patron';

COMMENT ON FUNCTION @extschema@.act_as_token(text) IS
'Withdrawn in 1.3 (a token sent to the server can be read by other sessions): use token_nonce() and act_as_proof()';

-- Safe for everyone: a nonce grants nothing, and a proof nothing without
-- the token, which only the signing service hands out.
GRANT EXECUTE ON FUNCTION @extschema@.token_nonce(),
    @extschema@.act_as_proof(bigint, bigint, text) TO PUBLIC;

-- ===========================================================================
-- The consent rule, written once (every statement takes it from here; an
-- SQL function this simple is inlined where it is used)
-- ===========================================================================

CREATE FUNCTION @extschema@.consent_in_force(given boolean, until timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT $1 AND ($2 IS NULL OR $2 OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()) $$;
COMMENT ON FUNCTION @extschema@.consent_in_force(boolean, timestamptz) IS
'The consent rule, written once: a consent is in force when given and not ended before the statement started';
GRANT EXECUTE ON FUNCTION @extschema@.consent_in_force(boolean, timestamptz) TO PUBLIC;

-- ===========================================================================
-- The library system's rows, read as their owner, for the statements the
-- extension runs as its own owner (src/ils_rows.c)
-- ===========================================================================

CREATE FUNCTION @extschema@.ils_rows(source oid, by_patron bigint[], by_xact bigint[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_ils_rows'
LANGUAGE C STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.ils_rows(oid, bigint[], bigint[]) IS
'The rows of a mapping view or transaction table, read as the library system table''s owner; for the extension owner''s own statements';
REVOKE ALL ON FUNCTION @extschema@.ils_rows(oid, bigint[], bigint[]) FROM PUBLIC;

-- ===========================================================================
-- What a patron-facing role can read around row-level security
-- ===========================================================================

CREATE FUNCTION @extschema@.exposed_to_patron_facing(
    OUT patron_facing_role regrole, OUT kind text, OUT object text, OUT reads regclass,
    OUT how text, OUT fix text)
RETURNS SETOF record
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- the tables protect() put policies on
    WITH RECURSIVE protected AS (
        SELECT DISTINCT p.polrelid AS relid FROM pg_catalog.pg_policy p
         WHERE p.polname OPERATOR(pg_catalog.~~) 'patron\_group\_%'
    ),
    -- views and materialized views that read them, directly or through others
    readers(relid, reads, invoker) AS (
        SELECT DISTINCT r.ev_class, pr.relid,
               EXISTS (SELECT FROM pg_catalog.unnest(c.reloptions) o
                        WHERE pg_catalog.lower(o) OPERATOR(pg_catalog.=) ANY
                              ('{security_invoker=true,security_invoker=on,security_invoker=yes,security_invoker=1}'::text[]))
          FROM protected pr
          JOIN pg_catalog.pg_depend d ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                     AND d.refobjid OPERATOR(pg_catalog.=) pr.relid
                                     AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
          JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
         WHERE r.ev_class OPERATOR(pg_catalog.<>) pr.relid
        UNION
        SELECT r.ev_class, rd.reads,
               EXISTS (SELECT FROM pg_catalog.unnest(c.reloptions) o
                        WHERE pg_catalog.lower(o) OPERATOR(pg_catalog.=) ANY
                              ('{security_invoker=true,security_invoker=on,security_invoker=yes,security_invoker=1}'::text[]))
          FROM readers rd
          JOIN pg_catalog.pg_depend d ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                     AND d.refobjid OPERATOR(pg_catalog.=) rd.relid
                                     AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
          JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
         WHERE r.ev_class OPERATOR(pg_catalog.<>) rd.relid
    ),
    facing AS (SELECT f.role_name::pg_catalog.oid AS role FROM @extschema@.patron_facing_roles f)
    SELECT f.role::pg_catalog.regrole,
           CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
           c.oid::pg_catalog.regclass::pg_catalog.text, rd.reads::pg_catalog.regclass,
           CASE c.relkind WHEN 'm' THEN 'and has no row-level security of its own'
                ELSE 'with the rights of its owner ' OPERATOR(pg_catalog.||)
                     pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner)) END,
           CASE c.relkind
                WHEN 'm' THEN pg_catalog.format('REVOKE SELECT ON %s FROM %s;', c.oid::pg_catalog.regclass, f.role::pg_catalog.regrole)
                ELSE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true);  -- or REVOKE SELECT ON %s FROM %s;',
                                       c.oid::pg_catalog.regclass, c.oid::pg_catalog.regclass, f.role::pg_catalog.regrole) END
      FROM readers rd
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) rd.relid
      CROSS JOIN facing f
     WHERE (c.relkind OPERATOR(pg_catalog.=) 'm' OR NOT rd.invoker)
       AND c.relnamespace OPERATOR(pg_catalog.<>) '@extschema@'::pg_catalog.regnamespace
       AND pg_catalog.has_table_privilege(f.role, c.oid, 'SELECT')
       -- a view owned by a role the policies apply to reads no more than it
       AND (c.relkind OPERATOR(pg_catalog.=) 'm' OR NOT EXISTS
             (SELECT FROM facing o WHERE pg_catalog.pg_has_role(c.relowner, o.role, 'USAGE')
                AND NOT (SELECT a.rolsuper OR a.rolbypassrls FROM pg_catalog.pg_roles a
                          WHERE a.oid OPERATOR(pg_catalog.=) c.relowner)))
    UNION ALL
    -- SECURITY DEFINER functions a patron-facing role may call, whose owner
    -- row-level security does not narrow, and which name a protected table
    SELECT DISTINCT f.role::pg_catalog.regrole, 'function',
           p.oid::pg_catalog.regprocedure::pg_catalog.text, pr.relid::pg_catalog.regclass,
           'with the rights of its owner ' OPERATOR(pg_catalog.||)
           pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(p.proowner)) OPERATOR(pg_catalog.||)
           ' (SECURITY DEFINER)',
           pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM %s;  -- and from PUBLIC, if it is granted there',
                             p.oid::pg_catalog.regprocedure, f.role::pg_catalog.regrole)
      FROM pg_catalog.pg_proc p
      CROSS JOIN facing f
      JOIN protected pr ON EXISTS (SELECT FROM pg_catalog.pg_depend d
                                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                                      AND d.objid OPERATOR(pg_catalog.=) p.oid
                                      AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                      AND d.refobjid OPERATOR(pg_catalog.=) pr.relid)
                        -- a body kept as text: the table named after FROM or JOIN, or with its schema
                        OR p.prosrc OPERATOR(pg_catalog.~*) (
                           SELECT pg_catalog.format('\m(from|join)\s+(%1$s\.)?%2$s\M|\m%1$s\.%2$s\M',
                                      pg_catalog.regexp_replace(n.nspname::pg_catalog.text, '([^[:alnum:]_])', '\\\1', 'g'),
                                      pg_catalog.regexp_replace(c.relname::pg_catalog.text, '([^[:alnum:]_])', '\\\1', 'g'))
                             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                                  ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                            WHERE c.oid OPERATOR(pg_catalog.=) pr.relid)
     WHERE p.prosecdef
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e
                        WHERE e.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                          AND e.objid OPERATOR(pg_catalog.=) p.oid
                          AND e.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
                          AND e.deptype OPERATOR(pg_catalog.=) 'e')
       AND pg_catalog.has_function_privilege(f.role, p.oid, 'EXECUTE')
       AND NOT EXISTS (SELECT FROM facing o WHERE pg_catalog.pg_has_role(p.proowner, o.role, 'USAGE')
                         AND NOT (SELECT a.rolsuper OR a.rolbypassrls FROM pg_catalog.pg_roles a
                                   WHERE a.oid OPERATOR(pg_catalog.=) p.proowner))
     ORDER BY 1, 3, 4
$$;
COMMENT ON FUNCTION @extschema@.exposed_to_patron_facing() IS
'Views, materialized views and SECURITY DEFINER functions through which a patron-facing role can read a protected table without row-level security narrowing it, with the fix for each';
REVOKE ALL ON FUNCTION @extschema@.exposed_to_patron_facing() FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.health(
    OUT check_name text, OUT severity text, OUT subject text, OUT detail text, OUT fix text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    pmap record;
    cols text;
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
              WHERE share_circulations
                AND NOT patron_group.consent_in_force(share_circulations, share_circulations_until)
             UNION ALL
             SELECT patron_id, 'bills', share_bills_until
               FROM patron_group.accounts
              WHERE share_bills AND NOT patron_group.consent_in_force(share_bills, share_bills_until)
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
    -- disabled or bypassed); the patron table is read as its owner, through
    -- ils_rows(), never planned as the extension's owner
    IF pmap.relid IS NOT NULL AND pmap.mapping IS NOT NULL THEN
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname::pg_catalog.text) OPERATOR(pg_catalog.||) ' '
                                     OPERATOR(pg_catalog.||) pg_catalog.format_type(a.atttypid, a.atttypmod),
                                     ', ' ORDER BY a.attnum)
          INTO cols
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) pmap.mapping::pg_catalog.oid
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        FOR r IN EXECUTE pg_catalog.format(
                'SELECT a.patron_id FROM patron_group.accounts a WHERE NOT EXISTS '
                '(SELECT FROM patron_group.ils_rows(%s, NULL, NULL) AS p(%s) '
                ' WHERE p.patron_id OPERATOR(pg_catalog.=) a.patron_id) ORDER BY 1',
                pmap.mapping::pg_catalog.oid, cols) LOOP
            check_name := 'account without patron'; severity := 'warning';
            subject := 'patron ' || r.patron_id;
            detail := pg_catalog.format('the account of patron %s remains but the patron is no longer in %s', r.patron_id, pmap.relid);
            fix := pg_catalog.format('DELETE FROM patron_group.accounts WHERE patron_id = %s;  -- as a superuser; the group''s counts and the history follow', r.patron_id);
            RETURN NEXT;
        END LOOP;
        FOR r IN EXECUTE pg_catalog.format(
                'SELECT p.patron_id::bigint AS patron_id FROM patron_group.ils_rows(%s, NULL, NULL) AS p(%s) '
                'WHERE NOT EXISTS (SELECT FROM patron_group.accounts a '
                'WHERE a.patron_id OPERATOR(pg_catalog.=) p.patron_id) ORDER BY 1',
                pmap.mapping::pg_catalog.oid, cols) LOOP
            check_name := 'patron without account'; severity := 'warning';
            subject := 'patron ' || r.patron_id;
            detail := pg_catalog.format('patron %s of %s has no account, so cannot be grouped', r.patron_id, pmap.relid);
            fix := pg_catalog.format('INSERT INTO patron_group.accounts (patron_id) VALUES (%s);  -- as a superuser; then SELECT patron_group.rebuild(ARRAY[%s]::bigint[]);', r.patron_id, r.patron_id);
            RETURN NEXT;
        END LOOP;
    END IF;

    -- what a patron-facing role can read around row-level security
    FOR r IN SELECT * FROM patron_group.exposed_to_patron_facing() LOOP
        check_name := 'read around protection'; severity := 'error';
        subject := r.kind || ' ' || r.object;
        detail := pg_catalog.format('patron-facing role %s can read %s, which reads protected table %s %s',
                                    r.patron_facing_role, r.object, r.reads, r.how);
        fix := r.fix;
        RETURN NEXT;
    END LOOP;

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

-- The reporting views, written again by the library now that the consent
-- rule's function exists (every write to attachments has them written).
UPDATE @extschema@.attachments SET relid = relid WHERE false;

-- A loans table that is also a child of the transaction table now has one
-- read policy, its own: make the protected tables' policies again.
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
