SELECT count(*) FROM patron_group.health();
