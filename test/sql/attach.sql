-- Attaching the library system's tables: validation first, nothing half done.
SELECT state() AS before \gset

-- bad input: each is an error and leaves everything as it was
SELECT try($$SELECT patron_group.attach_patrons(NULL)$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', id_column => NULL)$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.nosuchtable')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers')$$);  -- no column "id"
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', barcode_column => 'nosuch')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', barcode_column => 'dateofbirth')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'surname')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', name_columns => '{surname,nickname}')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', clone_columns => '{address,town}')$$);
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber', clone_columns => '{borrowernumber}')$$);
SELECT try($$SELECT patron_group.attach_patrons('ev.usr', clone_columns => '{expire_date}')$$);
CREATE VIEW ko.borrower_view AS SELECT * FROM ko.borrowers;
SELECT try($$SELECT patron_group.attach_patrons('ko.borrower_view', 'borrowernumber')$$);
CREATE TABLE ko.numeric_keys (id numeric PRIMARY KEY, name text);
SELECT try($$SELECT patron_group.attach_patrons('ko.numeric_keys')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr')$$);  -- no patron table yet
SELECT state() = :'before' AS unchanged;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'patron_group%';

-- Koha shape: barcode on the patron row
SELECT patron_group.attach_patrons('ko.borrowers', id_column => 'borrowernumber',
    barcode_column => 'cardnumber', name_columns => '{surname,firstname}',
    clone_columns => '{surname,address,city,phone,branchcode}');
SELECT relid, kind, id_column, barcode_column, name_columns, clone_columns,
       barcode_index IS NOT NULL AS has_index
  FROM patron_group.attachments;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'ko.borrowers'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT pg_get_indexdef(barcode_index::regclass) FROM patron_group.attachments;
SELECT patron_id, group_id, is_lead FROM patron_group.accounts ORDER BY 1;

-- attached twice, or a second patron table
SELECT try($$SELECT patron_group.attach_patrons('ko.borrowers', 'borrowernumber')$$);
SELECT try($$SELECT patron_group.attach_patrons('ev.usr')$$);
SELECT try($$SELECT patron_group.attach_cards('ko.borrowers', 'borrowernumber', 'cardnumber')$$);

-- accounts follow the patron table: insert (single and multi-row), id change, delete
INSERT INTO ko.borrowers (surname, firstname, cardnumber) VALUES ('Novak', 'Ivana', 'N-1');
INSERT INTO ko.borrowers (surname, firstname, cardnumber)
    SELECT 'Bulk', 'Patron ' || i, 'B-' || i FROM generate_series(1, 50) i;
SELECT count(*) AS accounts, count(*) FILTER (WHERE patron_id > 7) AS new_ones FROM patron_group.accounts;
SELECT (SELECT count(*) FROM ko.borrowers) = (SELECT count(*) FROM patron_group.accounts) AS one_account_per_patron;
UPDATE ko.borrowers SET borrowernumber = 1000 WHERE surname = 'Novak';
SELECT patron_id FROM patron_group.accounts WHERE patron_id IN (8, 1000);
DELETE FROM ko.borrowers WHERE surname IN ('Bulk', 'Novak');
SELECT count(*) AS accounts FROM patron_group.accounts;
COPY ko.borrowers (surname, firstname, cardnumber) FROM stdin;
Copy	Carla	C-1
\.
SELECT count(*) AS accounts FROM patron_group.accounts;
DELETE FROM ko.borrowers WHERE surname = 'Copy';

-- detach undoes it: triggers, index, accounts
SELECT patron_group.detach('ko.borrowers');
SELECT try($$SELECT patron_group.detach('ko.borrowers')$$);
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'ko.borrowers'::regclass AND NOT tgisinternal;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'ko.borrowers'::regclass AND indexprs IS NOT NULL;
SELECT count(*) AS accounts FROM patron_group.accounts;

-- Evergreen shape: barcodes in a card table with an active condition
SELECT patron_group.attach_patrons('ev.usr', name_columns => '{family_name,first_given_name,second_given_name}',
    clone_columns => '{family_name,day_phone,home_ou,street1,city}');
SELECT state() AS before \gset
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'barcode')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'activ')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'active AND random() > 0.5')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'active AND usr IN (SELECT id FROM ev.usr)')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'bool_and(active)')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'active) FROM ev.card, ev.usr --')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'true; DROP TABLE ev.card')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', active_when => 'active) UNION SELECT (true')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'nosuch')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'barcode')$$);
SELECT try($$SELECT patron_group.attach_cards('ev.card', 'usr', barcode_column => 'active')$$);
SELECT state() = :'before' AS unchanged;
SELECT patron_group.attach_cards('ev.card', patron_column => 'usr', barcode_column => 'barcode',
    active_when => 'active');
SELECT kind, patron_column, barcode_column, mapping FROM patron_group.attachments ORDER BY kind;
-- the active condition is kept parsed, in the card table's mapping view
SELECT pg_get_viewdef(mapping) FROM patron_group.attachments WHERE kind = 'cards';
SELECT try($$SELECT patron_group.detach('ev.usr')$$);  -- cards still attached
SELECT try($$SELECT patron_group.detach('ko.borrowers')$$);
