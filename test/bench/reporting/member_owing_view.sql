SELECT count(*) FROM patron_group.member_summary WHERE balance_owed > 5;
