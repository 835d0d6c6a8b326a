-- Every mistake a caller can make: a clear error, a fitting SQLSTATE, nothing changed.
SELECT patron_group.move_to_group(2, 1);
SELECT state() AS before \gset

SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.move_to_group(NULL::bigint, 1)$$),
    ($$SELECT patron_group.move_to_group(3, NULL)$$),
    ($$SELECT patron_group.move_to_group(NULL::bigint[], 1)$$),
    ($$SELECT patron_group.move_to_group(ARRAY[3, NULL], 1)$$),
    ($$SELECT patron_group.move_to_group('{}'::bigint[], 1)$$),
    ($$SELECT patron_group.move_to_group(1, 1)$$),
    ($$SELECT patron_group.move_to_group(ARRAY[3, 1], 1)$$),
    ($$SELECT patron_group.move_to_group(2, 1)$$),
    ($$SELECT patron_group.move_to_group(ARRAY[3, 2], 1)$$),
    ($$SELECT patron_group.move_to_group(3, 424242)$$),
    ($$SELECT patron_group.move_to_group(ARRAY[3, 424242], 1)$$),
    ($$SELECT patron_group.move_to_group(patron_group.resolve_barcode('no-such-card'), 1)$$),
    ($$SELECT patron_group.remove_from_group(NULL)$$),
    ($$SELECT patron_group.remove_from_group(4)$$),
    ($$SELECT patron_group.remove_from_group(424242)$$),
    ($$SELECT patron_group.set_lead(NULL)$$),
    ($$SELECT patron_group.set_lead(1, NULL)$$),
    ($$SELECT patron_group.set_lead(4)$$),
    ($$SELECT patron_group.set_lead(424242)$$),
    ($$SELECT patron_group.set_group_label(NULL, 'x')$$),
    ($$SELECT patron_group.set_group_label(424242, 'x')$$),
    ($$SELECT * FROM patron_group.group_members(NULL)$$),
    ($$SELECT * FROM patron_group.group_members(424242)$$),
    ($$SELECT patron_group.detach(NULL)$$),
    ($$SELECT patron_group.attach_cards(NULL, 'x')$$),
    ($$SELECT patron_group.grant_staff('no_such_role')$$),
    ($$SELECT patron_group.grant_staff(NULL)$$),
    ($$UPDATE patron_group.accounts SET is_lead = true WHERE patron_id = 4$$),
    ($$INSERT INTO patron_group.accounts (patron_id, group_id) VALUES (5000, 424242)$$)
) AS t(stmt);
SELECT state() = :'before' AS unchanged;

-- moving several where one is bad moves none
SELECT try($$SELECT patron_group.move_to_group(ARRAY[3, 4, 424242], 1)$$);
SELECT patron_id, group_id FROM patron_group.accounts WHERE patron_id IN (3, 4) ORDER BY 1;

-- repeated ids are one move
SELECT patron_group.move_to_group(ARRAY[3, 3, 4], 1) IS NOT NULL AS moved;
SELECT member_count FROM patron_group.groups g JOIN patron_group.accounts a USING (group_id) WHERE a.patron_id = 1;

-- nothing attached
SELECT patron_group.detach('ko.borrowers');
SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.move_to_group(3, 1)$$),
    ($$SELECT patron_group.resolve_barcode('23529000000011')$$),
    ($$SELECT * FROM patron_group.group_members(1)$$),
    ($$SELECT patron_group.clone_patron(1, '{}')$$)
) AS t(stmt);
