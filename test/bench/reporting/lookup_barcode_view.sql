SELECT * FROM patron_group.member_summary WHERE barcode = CAST(:id AS text);
