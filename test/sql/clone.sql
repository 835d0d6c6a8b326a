-- "Save & Clone" / "Register a New Group Member by Cloning Selected Patron".

-- Evergreen shape: the barcode becomes a new card
SELECT patron_group.clone_patron(101, '{"first_given_name": "Linh", "barcode": "29000000000106"}',
                                 reason => 'new registration') AS linh \gset
SELECT id = :linh AS is_new, family_name, first_given_name, second_given_name, day_phone, home_ou, street1, city
  FROM ev.usr WHERE id IN (101, :linh) ORDER BY id;
SELECT usr = :linh AS is_new, barcode, active FROM ev.card WHERE usr = :linh;
SELECT member_id = :linh AS is_new, display_name, barcode FROM patron_group.group_members(:linh) ORDER BY 2;
SELECT action, patron_id = :linh AS is_new, reason FROM patron_group.history ORDER BY event_id DESC LIMIT 1;
SELECT patron_group.find_patron(' 2900000000010６ ') IS NOT NULL AS found_by_new_barcode;

-- cloning a patron with no group puts both in a new group
SELECT patron_group.clone_patron(104, '{"first_given_name": "Deniz", "street1": "22 Pine Court"}') AS deniz \gset
SELECT member_id = :deniz AS is_new, display_name, member_count
  FROM patron_group.group_members(104) m JOIN patron_group.groups g USING (group_id) ORDER BY 2;
SELECT street1 FROM ev.usr WHERE id = :deniz;   -- the caller's value wins over the copied one

-- errors leave nothing behind: no patron row, no card, no account, no history
SELECT state() AS before, (SELECT count(*) FROM ev.usr) AS patrons, (SELECT count(*) FROM ev.card) AS cards \gset
SELECT try($$SELECT patron_group.clone_patron(101, '{"nickname": "Lin"}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": "X", "home_ou": "Central"}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": "X", "home_ou": 99999999999}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": null}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": "X", "barcode": "２９０００００００００１０１"}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": "X", "expire_date": "2031-01-01"}')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '["first_given_name"]')$$);
SELECT try($$SELECT patron_group.clone_patron(101, '"text"')$$);
SELECT try($$SELECT patron_group.clone_patron(101, NULL)$$);
SELECT try($$SELECT patron_group.clone_patron(NULL, '{}')$$);
SELECT try($$SELECT patron_group.clone_patron(999, '{"first_given_name": "X"}')$$);
-- a card the library system refuses (its own unique constraint): the patron row goes too
SELECT try($$SELECT patron_group.clone_patron(101, '{"first_given_name": "X", "barcode": "29000000009999"}')$$);
SELECT state() = :'before' AS unchanged,
       (SELECT count(*) FROM ev.usr) = :patrons AS no_patron_added,
       (SELECT count(*) FROM ev.card) = :cards AS no_card_added;

-- Koha shape: the barcode is a column of the patron table
SELECT patron_group.detach('ev.card');
SELECT patron_group.detach('ev.usr');
SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', barcode_column => 'cardnumber',
    name_columns => '{surname,firstname}', clone_columns => '{surname,address,city,phone,branchcode}');
SELECT patron_group.clone_patron(1, '{"firstname": "Lucía", "cardnumber": "23529000000060", "dateofbirth": "2019-02-14"}') AS lucia \gset
SELECT borrowernumber = :lucia AS is_new, cardnumber, surname, firstname, address, city, phone, dateofbirth, email
  FROM ko.borrowers WHERE borrowernumber IN (1, :lucia) ORDER BY 1;
SELECT display_name, barcode FROM patron_group.group_members(1) ORDER BY 1;
SELECT try($$SELECT patron_group.clone_patron(1, '{"firstname": "X", "cardnumber": " 2352 9000 0000 11"}')$$);
SELECT try($$SELECT patron_group.clone_patron(1, '{"firstname": "X", "barcode": "1"}')$$);  -- no card table here
