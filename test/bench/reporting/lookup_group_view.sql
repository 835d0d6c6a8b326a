SELECT * FROM patron_group.member_summary WHERE group_id = :id ORDER BY patron_id;
