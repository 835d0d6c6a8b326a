-- The library system's own households (Evergreen's actor.usr.usrgroup and
-- master_account): imported as groups when the patron table is attached,
-- written back at every move so that the library system's screens agree,
-- and followed when the library system changes them itself.
--
-- It runs in a database of its own.
\set regress_db :DBNAME
CREATE DATABASE patron_group_households;
\c patron_group_households
SET client_min_messages = warning;
CREATE EXTENSION patron_group;
\i test/sql/helpers.psql

CREATE SCHEMA eg;
CREATE SEQUENCE eg.usr_usrgroup_seq START 1000;
CREATE TABLE eg.usr (id serial PRIMARY KEY, family_name text NOT NULL,
                     usrname text NOT NULL UNIQUE, home_ou integer NOT NULL,
                     usrgroup integer NOT NULL DEFAULT nextval('eg.usr_usrgroup_seq'),
                     master_account boolean NOT NULL DEFAULT false,
                     deleted boolean NOT NULL DEFAULT false,
                     card integer UNIQUE);
INSERT INTO eg.usr (id, family_name, usrname, home_ou, usrgroup, master_account) VALUES
    (1, 'Alvarez', 'maria', 1, 100, true), (2, 'Alvarez', 'sofia', 1, 100, false),
    (3, 'Alvarez', 'diego', 1, 100, false), (4, 'Okafor', 'ada', 2, 200, false),
    (5, 'Okafor', 'obi', 2, 200, false), (6, 'Chen', 'wei', 1, 300, false),
    (7, 'Deleted', 'gone', 1, 200, false);
SELECT setval('eg.usr_id_seq', 7);
CREATE TABLE eg.card (id serial PRIMARY KEY, usr integer NOT NULL, barcode text NOT NULL UNIQUE,
                      active boolean NOT NULL DEFAULT true);
INSERT INTO eg.card (usr, barcode, active) VALUES (4, 'OLD-4', false), (4, 'A-4', true), (4, 'Z-4', true);
UPDATE eg.usr SET card = (SELECT id FROM eg.card WHERE barcode = 'A-4') WHERE id = 4;
UPDATE eg.usr SET deleted = true WHERE id = 7;

-- the households agree with the groups: every patron not deleted shares
-- a household with exactly the members of their group
CREATE VIEW disagree AS
SELECT u.id, u.usrgroup, a.group_id,
       ARRAY(SELECT o.id::bigint FROM eg.usr o WHERE o.usrgroup = u.usrgroup AND o.id <> u.id AND NOT o.deleted ORDER BY 1) AS household,
       ARRAY(SELECT m.patron_id FROM patron_group.accounts m
              WHERE m.group_id = a.group_id AND m.patron_id <> u.id ORDER BY 1) AS members,
       u.master_account, a.is_lead
  FROM eg.usr u JOIN patron_group.accounts a ON a.patron_id = u.id
 WHERE NOT u.deleted
   AND (ARRAY(SELECT o.id::bigint FROM eg.usr o WHERE o.usrgroup = u.usrgroup AND o.id <> u.id AND NOT o.deleted ORDER BY 1)
        IS DISTINCT FROM ARRAY(SELECT m.patron_id FROM patron_group.accounts m
                                WHERE m.group_id = a.group_id AND m.patron_id <> u.id ORDER BY 1)
        OR (a.group_id IS NOT NULL AND u.master_account <> a.is_lead));

-- mistakes
SELECT try($$SELECT patron_group.attach_patrons('eg.usr', group_column => 'family_name')$$);
SELECT try($$SELECT patron_group.attach_patrons('eg.usr', lead_column => 'master_account')$$);
SELECT try($$SELECT patron_group.attach_patrons('eg.usr', group_column => 'usrgroup', lead_column => 'family_name')$$);
CREATE TABLE eg.strict (id integer PRIMARY KEY, household integer NOT NULL);
SELECT try($$SELECT patron_group.attach_patrons('eg.strict', group_column => 'household')$$);

-- an attach that fails while it imports the households changes nothing, and
-- the session goes on writing households back (the moves below)
SELECT try($$SELECT patron_group.attach_patrons('eg.usr', deleted_when => '1 / (id - 3) = 0',
         group_column => 'usrgroup', lead_column => 'master_account')$$);
SELECT count(*) AS attached FROM patron_group.attachments;

-- attaching imports the households of two patrons or more (deleted ones aside)
SELECT patron_group.attach_patrons('eg.usr', name_columns => '{family_name}', deleted_when => 'deleted',
         group_column => 'usrgroup', lead_column => 'master_account',
         clone_columns => '{family_name,home_ou}');
SELECT patron_group.attach_cards('eg.card', 'usr', 'barcode', active_when => 'active',
         primary_card_column => 'card', card_id_column => 'id');
SELECT group_id, household, member_count, lead_count FROM patron_group.groups ORDER BY group_id;
SELECT patron_id, group_id, is_lead FROM patron_group.accounts ORDER BY patron_id;
SELECT action, patron_id, to_group, reason FROM patron_group.history ORDER BY event_id;
SELECT * FROM disagree;

-- moves write the household back
SELECT patron_group.move_to_group(6, 4);
SELECT id, usrgroup FROM eg.usr WHERE id IN (4, 6) ORDER BY id;
SELECT patron_group.remove_from_group(2, 'moved out');
SELECT id, usrgroup >= 1000 AS household_of_their_own FROM eg.usr WHERE id = 2;
SELECT patron_group.set_lead(4);
SELECT id, master_account FROM eg.usr WHERE id = 4;
SELECT * FROM disagree;

-- the library system moves patrons itself: the groups follow
UPDATE eg.usr SET usrgroup = 100 WHERE id = 5;           -- 5 joins the Alvarez household
SELECT patron_id, group_id FROM patron_group.accounts WHERE patron_id = 5;
UPDATE eg.usr SET usrgroup = nextval('eg.usr_usrgroup_seq') WHERE id = 3;   -- 3 leaves it
UPDATE eg.usr SET usrgroup = (SELECT usrgroup FROM eg.usr WHERE id = 2) WHERE id = 3;  -- and makes one with 2
SELECT g.group_id, g.household = u.usrgroup AS same, g.member_count
  FROM patron_group.groups g JOIN patron_group.accounts a ON a.group_id = g.group_id
  JOIN eg.usr u ON u.id = a.patron_id WHERE a.patron_id = 3;
UPDATE eg.usr SET master_account = true WHERE id = 5;
SELECT patron_id, is_lead FROM patron_group.accounts WHERE patron_id = 5;
SELECT action, patron_id, reason FROM patron_group.history WHERE reason LIKE 'household changed%' ORDER BY event_id;
SELECT * FROM disagree;

-- as actor.usr_delete() does it: the lead leaves, the household column as
-- the library system left it
UPDATE eg.usr SET deleted = true, usrgroup = 0, master_account = false WHERE id = 1;
SELECT patron_id, group_id, is_lead FROM patron_group.accounts WHERE patron_id = 1;
SELECT usrgroup FROM eg.usr WHERE id = 1;
SELECT * FROM disagree;
SELECT * FROM patron_group.verify();
SELECT * FROM patron_group.health();

-- the barcode shown is the primary card's (the patron table's card column),
-- not the greatest active one
SELECT patron_id, barcode FROM patron_group.member_summary WHERE patron_id = 4;
-- and in the member list, read here (a superuser's) as the tables' owner
SELECT member_id, barcode FROM patron_group.group_members(4) WHERE member_id = 4;

-- cloning says which required columns the caller must give, before writing
SELECT try($$SELECT patron_group.clone_patron(4, '{"barcode": "A-8"}')$$);
SELECT patron_group.alter_attachment('eg.usr', clone_columns => '{family_name,home_ou,usrname}');
SELECT try($$SELECT patron_group.clone_patron(4, '{"barcode": "A-8"}')$$);
SELECT patron_group.alter_attachment('eg.usr', clone_columns => '{family_name,home_ou}');
SELECT count(*) AS patrons, (SELECT count(*) FROM eg.card) AS cards FROM eg.usr;
-- with what it needs: the clone joins the household, and its card is its primary one
SELECT patron_group.clone_patron(4, '{"usrname": "ada2", "barcode": "A-8"}') AS clone \gset
SELECT u.id = :clone AS is_clone, u.family_name, u.home_ou, u.usrgroup = (SELECT usrgroup FROM eg.usr WHERE id = 4) AS same_household,
       c.barcode AS primary_card
  FROM eg.usr u JOIN eg.card c ON c.id = u.card WHERE u.id = :clone;
SELECT barcode FROM patron_group.member_summary WHERE patron_id = :clone;
SELECT * FROM disagree;

\c :regress_db
DROP DATABASE patron_group_households;
