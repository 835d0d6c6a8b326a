-- One member_summary row, written by hand over the bench library's tables:
-- barcode the max active card barcode (attach_cards(..., active_when =>
-- 'active')), display_name "Family, Given" from the patron table
-- (name_columns {family_name,given_name}), overdue counted from the open, not
-- lost loans due before now, the rest from patron_group.accounts and groups.
-- By barcode: the active card with that barcode (card.barcode is unique),
-- if no active card of the same patron has a greater one (the max).
SELECT a.patron_id,
       c0.barcode,
       concat_ws(', ', p.family_name, NULLIF(concat_ws(' ', p.given_name), '')) AS display_name,
       a.group_id,
       g.label AS group_label,
       a.is_lead,
       a.share_circulations,
       a.share_circulations_until,
       a.share_circulations AND (a.share_circulations_until IS NULL
           OR a.share_circulations_until > statement_timestamp()) AS circulations_shared_now,
       a.share_bills,
       a.share_bills_until,
       a.share_bills AND (a.share_bills_until IS NULL
           OR a.share_bills_until > statement_timestamp()) AS bills_shared_now,
       a.items_out,
       (SELECT count(*) FROM circulation l
         WHERE l.patron = a.patron_id AND l.checkin_at IS NULL
           AND l.stop_fines IS DISTINCT FROM 'LOST' AND l.due_at < now()) AS items_overdue,
       a.items_lost,
       a.amount_billed,
       a.amount_paid,
       a.balance_owed,
       a.items_claims_returned,
       a.items_long_overdue
  FROM card c0
  JOIN patron_group.accounts a ON a.patron_id = c0.patron
  LEFT JOIN patron_group.groups g ON g.group_id = a.group_id
  LEFT JOIN patron p ON p.id = a.patron_id
 WHERE c0.barcode = CAST(:id AS text) AND c0.active
   AND NOT EXISTS (SELECT FROM card c1
                    WHERE c1.patron = c0.patron AND c1.active AND c1.barcode > c0.barcode);
