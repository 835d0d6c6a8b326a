SELECT * FROM patron_group.group_members(15);
