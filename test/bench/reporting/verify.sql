SELECT count(*) FROM patron_group.verify();
