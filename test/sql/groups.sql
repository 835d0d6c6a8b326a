-- The seed's Group Member Details workflow, on the Evergreen-shaped tables.
CREATE VIEW consistency AS
SELECT g.group_id, g.member_count, g.lead_count,
       count(a.patron_id) AS members, count(a.patron_id) FILTER (WHERE a.is_lead) AS leads,
       g.member_count = count(a.patron_id) AND g.lead_count = count(a.patron_id) FILTER (WHERE a.is_lead) AS consistent
  FROM patron_group.groups g LEFT JOIN patron_group.accounts a USING (group_id)
 GROUP BY g.group_id ORDER BY g.group_id;
SET patron_group.application_user = 'circdesk-anna';

-- a patron on their own
SELECT member_id, barcode, display_name, is_lead, group_id FROM patron_group.group_members(101);

-- "Move Another Patron To This Group": scan the barcode, confirm the name, move
SELECT patron_id, display_name, group_id, group_size FROM patron_group.find_patron(' 2900 0000 0001 02 ');
SELECT patron_group.move_to_group(patron_group.resolve_barcode(' 2900 0000 0001 02 '),
                                  into_group_of => 101, reason => 'same household') AS group_id \gset
SELECT member_id, barcode, display_name, is_lead FROM patron_group.group_members(101);
SELECT patron_group.set_lead(101, reason => 'parent');
SELECT patron_group.set_group_label(:group_id, 'Nguyễn family');
SELECT patron_group.set_lead(101);   -- already a lead: nothing changes, nothing recorded

-- several patrons in one call
SELECT patron_group.move_to_group(ARRAY[103, 104], into_group_of => 102) = :group_id AS same_group;
SELECT patron_group.set_lead(104);
SELECT group_label, member_id, display_name, is_lead FROM patron_group.group_members(103);
SELECT * FROM consistency;

-- "Remove Selected from Group": clears the lead flag
SELECT patron_group.remove_from_group(104, reason => 'added in error');
SELECT patron_id, group_id, is_lead FROM patron_group.accounts WHERE patron_id = 104;

-- "Move Selected Patrons to Another Patron's Group": 104 has no group, so one is made
SELECT patron_group.move_to_group(103, into_group_of => 104) AS second_group \gset
SELECT group_id = :second_group AS in_second_group, member_id, display_name
  FROM patron_group.group_members(104);
SELECT member_id, display_name, is_lead FROM patron_group.group_members(101);
SELECT * FROM consistency;

-- an emptied group disappears
SELECT patron_group.remove_from_group(104);
SELECT patron_group.remove_from_group(103);
SELECT count(*) AS second_group_rows FROM patron_group.groups WHERE group_id = :second_group;

-- a new card works at once; a deactivated one no longer finds the patron
INSERT INTO ev.card (usr, barcode) VALUES (102, '29000000000202');
UPDATE ev.card SET active = false WHERE barcode = '29000000000102';
SELECT patron_group.resolve_barcode('29000000000202');
SELECT try($$SELECT patron_group.resolve_barcode('29000000000102')$$);

-- other paths are counted and recorded too: a DBA's UPDATE, a patron deleted
UPDATE patron_group.accounts SET group_id = :group_id WHERE patron_id = 103;
INSERT INTO ev.usr (id, family_name, first_given_name) VALUES (105, 'Temp', 'Patron');
SELECT patron_group.move_to_group(105, 101);
DELETE FROM ev.usr WHERE id = 105;
SELECT * FROM consistency;

-- the history: who, what, from, to, why
SELECT event_id, db_role = current_user AS by_me, app_user, action, patron_id,
       from_group = :group_id AS from_first, to_group = :group_id AS to_first,
       from_group = :second_group AS from_second, to_group = :second_group AS to_second, reason
  FROM patron_group.history ORDER BY event_id;
SELECT try($$UPDATE patron_group.history SET reason = 'edited'$$);
SELECT try($$DELETE FROM patron_group.history$$);
SELECT try($$TRUNCATE patron_group.history$$);
RESET patron_group.application_user;
