SELECT * FROM patron_group.member_summary WHERE patron_id = :id;
