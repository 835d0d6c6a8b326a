-- Privileges: nothing for PUBLIC but normalize_barcode; grant_staff() for staff;
-- the library system's own roles need no rights on patron_group at all.
CREATE ROLE regress_staff;
CREATE ROLE regress_plain;
CREATE ROLE regress_ils;
GRANT USAGE ON SCHEMA ko TO regress_staff, regress_plain, regress_ils;
GRANT SELECT ON ko.borrowers TO regress_staff;
GRANT SELECT, INSERT, UPDATE, DELETE ON ko.borrowers TO regress_ils;
SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', barcode_column => 'cardnumber',
    name_columns => '{surname,firstname}', clone_columns => '{surname,address,city}');
SELECT patron_group.grant_staff('regress_staff');

-- anyone may normalize a barcode; nothing else
SET ROLE regress_plain;
SELECT patron_group.normalize_barcode(' ＡＢ 12 ');
SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.move_to_group(2, 1)$$),
    ($$SELECT patron_group.resolve_barcode('23529000000011')$$),
    ($$SELECT * FROM patron_group.group_members(1)$$),
    ($$SELECT patron_group.grant_staff('regress_plain')$$),
    ($$SELECT patron_group.attach_cards('ko.borrowers', 'borrowernumber', 'cardnumber')$$),
    ($$SELECT count(*) FROM patron_group.accounts$$),
    ($$SELECT count(*) FROM patron_group.history$$)
) AS t(stmt);
RESET ROLE;

-- the library system's role: its writes keep accounts in step without any grant
SET ROLE regress_ils;
INSERT INTO ko.borrowers (borrowernumber, surname, firstname, cardnumber) VALUES (50, 'Ilse', 'Role', 'ILS-50');
RESET ROLE;
SELECT patron_id FROM patron_group.accounts WHERE patron_id = 50;
SET ROLE regress_ils;
DELETE FROM ko.borrowers WHERE borrowernumber = 50;
RESET ROLE;
SELECT count(*) AS gone FROM patron_group.accounts WHERE patron_id = 50;

-- staff: the operations and read access, but no direct writes
SET ROLE regress_staff;
SET patron_group.application_user = 'desk-7';
SELECT patron_group.move_to_group(patron_group.resolve_barcode('23529000000045'), 5, 'partners') IS NOT NULL AS moved;
SELECT member_id, display_name FROM patron_group.group_members(5) ORDER BY 1;
SELECT db_role, app_user, action, patron_id, reason FROM patron_group.history ORDER BY event_id DESC LIMIT 2;
SELECT try(stmt) FROM (VALUES
    ($$UPDATE patron_group.accounts SET is_lead = true$$),
    ($$INSERT INTO patron_group.history (db_role, action) VALUES ('x', 'join')$$),
    ($$DELETE FROM patron_group.groups$$),
    ($$SELECT patron_group.detach('ko.borrowers')$$),
    -- clone writes the library system's table with the caller's own rights
    ($$SELECT patron_group.clone_patron(5, '{"firstname": "Anna"}')$$)
) AS t(stmt);
RESET patron_group.application_user;
RESET ROLE;
GRANT INSERT ON ko.borrowers TO regress_staff;
SET ROLE regress_staff;
SELECT patron_group.clone_patron(5, '{"firstname": "Anna", "cardnumber": "ANNA-1"}') IS NOT NULL AS cloned;
RESET ROLE;

-- search_path tricks do not reach the extension's functions
CREATE SCHEMA regress_evil;
GRANT USAGE ON SCHEMA regress_evil TO PUBLIC;
CREATE FUNCTION regress_evil.concat_ws(text, text, text) RETURNS text
    LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'evil concat_ws called'; RETURN 'evil'; END $$;
CREATE FUNCTION regress_evil.normalize_barcode(text) RETURNS text
    LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'evil normalize_barcode called'; RETURN $1; END $$;
CREATE FUNCTION regress_evil.leak(bigint, bigint) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'evil = called'; RETURN true; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_evil.leak);
CREATE TABLE regress_evil.accounts (patron_id bigint, group_id bigint, is_lead boolean);
SET ROLE regress_staff;
SET search_path = regress_evil, pg_catalog, public;
SELECT member_id, display_name FROM patron_group.group_members(5) ORDER BY 1;
SELECT patron_group.remove_from_group(4);
SELECT patron_group.resolve_barcode('ANNA-1') = 61 AS resolved;
SELECT regress_evil.concat_ws('a', 'b', 'c');  -- the trap works when called directly
RESET search_path;
RESET ROLE;

-- lookups read the library system's tables with the caller's own rights
CREATE ROLE regress_nosee;
SELECT patron_group.grant_staff('regress_nosee');
SET ROLE regress_nosee;
SELECT try($$SELECT * FROM patron_group.group_members(5)$$);
SELECT try($$SELECT patron_group.resolve_barcode('ANNA-1')$$);
RESET ROLE;
SELECT patron_group.revoke_staff('regress_nosee');
DROP ROLE regress_nosee;

-- revoke_staff takes it all back
SELECT patron_group.revoke_staff('regress_staff');
SET ROLE regress_staff;
SELECT try($$SELECT * FROM patron_group.group_members(5)$$);
RESET ROLE;

-- clean up
DROP SCHEMA regress_evil CASCADE;
REVOKE ALL ON ko.borrowers FROM regress_staff, regress_plain, regress_ils;
REVOKE ALL ON SCHEMA ko FROM regress_staff, regress_plain, regress_ils;
DROP ROLE regress_staff, regress_plain, regress_ils;
