-- The seed's scenario, step by step, as the circulation desk would do it.
\pset footer off
\set QUIET on
SET patron_group.application_user = 'desk-anna';

\echo
\echo '== 1. Save & Clone: Maria Alvarez registers her new baby, Lucas'
\echo '   (address, phone and home library are copied; the two are grouped)'
SELECT patron_group.clone_patron(1,
         '{"given_name": "Lucas", "date_of_birth": "2026-09-01", "barcode": "29000000000094"}',
         reason => 'registered at the desk with his mother') AS lucas \gset
SELECT id, family_name, given_name, street, city, phone, home_library
  FROM ils.patron WHERE id IN (1, :lucas) ORDER BY id;

\echo
\echo '== 2. Move Another Patron To This Group: staff scan Sofia''s card'
\echo '   (scanned from a phone screen: full-width digits, a stray space)'
\echo '   The barcode owner''s name appears for confirmation:'
SELECT patron_id, display_name, group_id, group_size
  FROM patron_group.find_patron('２９０００ ０００００００２９');
\echo '   Confirmed: Move User.'
SELECT patron_group.move_to_group(patron_group.resolve_barcode('２９０００ ０００００００２９'),
         into_group_of => 1, reason => 'daughter') AS alvarez_group \gset
SELECT patron_group.set_group_label(:alvarez_group, 'Alvarez family');

\echo
\echo '== 3. Two more at once (Diego, and Daniel Okafor scanned by mistake)'
SELECT display_name FROM patron_group.find_patron('29000000000037');
SELECT display_name FROM patron_group.find_patron('29000000000078');
SELECT patron_group.move_to_group(ARRAY[patron_group.resolve_barcode('29000000000037'),
                                        patron_group.resolve_barcode('29000000000078')],
                                  into_group_of => 1) IS NOT NULL AS moved;
SELECT patron_group.set_lead(1, reason => 'parent; consent form on file');

\echo
\echo '== 4. Group Member Details for Maria: each member''s figures, then the group''s'
SELECT coalesce(display_name, '') AS name, barcode, CASE WHEN is_lead THEN 'lead' ELSE '' END AS lead,
       items_out AS "out", items_overdue AS overdue, items_lost AS lost, balance_owed AS owed
  FROM patron_group.group_members(1);

\echo
\echo '== 5. The desk checks an item out to Diego, checks one of Maria''s in,'
\echo '   bills Diego a lost-card fee, and Maria pays Sofia''s fines'
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
SELECT 3, min(id), now(), now() + interval '21 days' FROM ils.item
 WHERE id NOT IN (SELECT item FROM ils.circulation WHERE checkin_at IS NULL);
UPDATE ils.circulation SET checkin_at = now()
 WHERE id = (SELECT min(id) FROM ils.circulation WHERE patron = 1 AND checkin_at IS NULL);
WITH x AS (INSERT INTO ils.transaction (patron, kind, created_at) VALUES (3, 'grocery', now()) RETURNING id)
INSERT INTO ils.billing (xact, amount, billed_at, note) SELECT id, 2.00, now(), 'Replacement card' FROM x;
INSERT INTO ils.payment (xact, amount, paid_at, kind)
SELECT b.xact, sum(b.amount), now(), 'cash'
  FROM ils.billing b JOIN ils.transaction t ON t.id = b.xact
 WHERE t.patron = 2 AND NOT b.voided
   AND NOT EXISTS (SELECT FROM ils.payment p WHERE p.xact = b.xact)
 GROUP BY b.xact;
SELECT coalesce(display_name, '') AS name,
       items_out AS "out", items_overdue AS overdue, items_lost AS lost, balance_owed AS owed
  FROM patron_group.group_members(1);
\echo '   verify() recounts every figure from the library''s tables; no rows means exact:'
SELECT * FROM patron_group.verify();

\echo
\echo '== 6. Move Selected Patrons to Another Patron''s Group:'
\echo '   Daniel belongs with his wife Grace Okafor (who has no group yet, so one is made)'
SELECT display_name, group_id FROM patron_group.find_patron('29000000000060');
SELECT patron_group.move_to_group(7, into_group_of => patron_group.resolve_barcode('29000000000060'),
         reason => 'added to the wrong family') AS okafor_group \gset
SELECT patron_group.set_group_label(:okafor_group, 'Okafor household');
SELECT group_label, display_name, barcode FROM patron_group.group_members(6);

\echo
\echo '== 7. Remove Selected from Group: Wei Chen was added to the Okafors in error'
SELECT patron_group.move_to_group(4, into_group_of => 6);
SELECT patron_group.remove_from_group(4, reason => 'added in error');
SELECT group_label, display_name FROM patron_group.group_members(6);

\echo
\echo '== 8. Group Member Details for Maria after the moves'
SELECT group_label, coalesce(display_name, '') AS name, barcode,
       CASE WHEN is_lead THEN 'lead' ELSE '' END AS lead,
       items_out AS "out", items_overdue AS overdue, balance_owed AS owed
  FROM patron_group.group_members(1);

\echo
\echo '== 9. Lead access, with consent: Maria signs in to the catalogue'
\echo '   Jürgen Müller, an adult lodger, joins the household; he shares nothing.'
\echo '   Sofia''s parents signed the form: staff record her consent to share loans.'
SELECT patron_group.move_to_group(5, into_group_of => 1, reason => 'lodger, same address') IS NOT NULL AS moved;
SELECT patron_group.set_consent(2, 'circulations', true, reason => 'consent form signed by parent');
DO $$ BEGIN CREATE ROLE opac; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE signin; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA ils TO opac;
GRANT SELECT ON ALL TABLES IN SCHEMA ils TO opac;
GRANT EXECUTE ON FUNCTION patron_group.issue_token(bigint, interval) TO signin;
SELECT patron_group.register_patron_facing('opac');
SELECT patron_group.protect(t)
  FROM unnest('{ils.patron,ils.card,ils.circulation,ils.billing,ils.payment}'::regclass[]) t \g /dev/null
-- catalogue: begin (it only reads; older versions signed in otherwise)
\echo '   The sign-in service hands the catalogue a signed token for Maria.  The'
\echo '   token never goes back to the server: each transaction takes a nonce and'
\echo '   sends HMAC-SHA256(token, nonce), which is worth nothing anywhere else.'
SET ROLE signin;
SELECT patron_group.issue_token(1) AS token \gset
RESET ROLE;
\echo '   The catalogue (role opac) runs one plain query for "my family''s loans":'
SET ROLE opac;
BEGIN;
SELECT patron_group.token_nonce() AS nonce \gset
\set expires `printf '%s' :'token' | cut -d. -f3`
\set proof `printf '%s' :'nonce' | openssl dgst -sha256 -hmac :'token' -r | cut -c1-64`
SELECT patron_group.act_as_proof(1, :expires, :'proof') AS signed_in_as;
SELECT m.display_name AS patron, i.title, c.due_at::date AS due
  FROM ils.circulation c
  JOIN patron_group.group_members(patron_group.current_patron()) m ON m.member_id = c.patron
  JOIN ils.item i ON i.id = c.item
 WHERE c.checkin_at IS NULL ORDER BY 1, 2;
\echo '   and her Group Member Details: names for all, figures only where consent allows'
SELECT coalesce(display_name, '') AS name, items_out AS "out", items_overdue AS overdue,
       balance_owed AS owed FROM patron_group.group_members(1);
COMMIT;
\echo '   After the transaction the catalogue''s connection acts for nobody:'
SELECT count(*) AS loans_visible FROM ils.circulation;
RESET ROLE;
-- catalogue: end
\echo '   The same query as staff (not patron-facing) sees every loan of the family:'
SELECT p.family_name || ', ' || p.given_name AS patron, i.title, c.due_at::date AS due
  FROM ils.circulation c JOIN ils.patron p ON p.id = c.patron JOIN ils.item i ON i.id = c.item
 WHERE c.checkin_at IS NULL AND c.patron IN (SELECT member_id FROM patron_group.group_members(1))
 ORDER BY 1, 2;

\echo
\echo '== 10. The history: every change, who made it and why (the membership_history view)'
SELECT to_char(happened_at, 'HH24:MI:SS') AS at, db_role, app_user, action, display_name AS patron,
       from_group_label AS "from", to_group_label AS "to", concat_ws(': ', detail, reason) AS why
  FROM patron_group.membership_history
 ORDER BY event_id;

\echo
\echo '== 11. The groups, as a reporting tool reads them (the group_summary view)'
SELECT group_id, label, member_count, lead_count, items_out, items_overdue, items_lost, balance_owed
  FROM patron_group.group_summary ORDER BY group_id;
\echo '   And what a DBA should look at (patron_group.health()):'
SELECT check_name, subject, fix FROM patron_group.health();

\echo
\echo '== 12. Group limits: the Alvarez family may have as many items out as now, no more'
SELECT patron_group.set_limits(NULL, max_items_overdue => 5);
SELECT patron_group.set_limits(:alvarez_group,
         max_items_out => (SELECT items_out FROM patron_group.groups WHERE group_id = :alvarez_group));
SELECT patron_group.enforce_limits('ils.circulation', true);
\echo '   Can Diego borrow one more?'
SELECT * FROM patron_group.checkout_allowed(3);
\echo '   The desk tries anyway: the database refuses (SQLSTATE PGL01)'
\set ON_ERROR_STOP off
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
SELECT 3, min(id), now(), now() + interval '21 days' FROM ils.item
 WHERE id NOT IN (SELECT item FROM ils.circulation WHERE checkin_at IS NULL);
\set ON_ERROR_STOP on
\echo '   A supervisor overrides for this one checkout (the DBA granted override_limits):'
BEGIN;
SELECT patron_group.override_limits('school project, approved by the branch manager');
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
SELECT 3, min(id), now(), now() + interval '21 days' FROM ils.item
 WHERE id NOT IN (SELECT item FROM ils.circulation WHERE checkin_at IS NULL);
COMMIT;
SELECT h.db_role, h.app_user, p.given_name AS patron, h.to_group AS "group", h.detail, h.reason
  FROM patron_group.history h JOIN ils.patron p ON p.id = h.patron_id
 WHERE h.action = 'limit_override';

\echo
\echo '== 13. Maria pays 5.00 for the family: the plan the ILS inserts into its payments'
SELECT transaction_id, member_id, open_balance, apply FROM patron_group.payment_plan(1, 5.00);
SELECT * FROM patron_group.verify();
