SELECT count(*), sum(items_overdue) FROM patron_group.member_summary;
