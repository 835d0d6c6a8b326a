SELECT count(*), sum(items_overdue) FROM patron_group.group_summary;
