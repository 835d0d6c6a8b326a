-- Every member_summary row, set-based: the harness compares it row for row
-- with SELECT * FROM patron_group.member_summary before timing anything.
-- Aggregates over the active cards and the overdue loans, hash-joined.
SELECT a.patron_id,
       c.barcode,
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
       COALESCE(o.n, 0) AS items_overdue,
       a.items_lost,
       a.amount_billed,
       a.amount_paid,
       a.balance_owed,
       a.items_claims_returned,
       a.items_long_overdue
  FROM patron_group.accounts a
  LEFT JOIN patron_group.groups g ON g.group_id = a.group_id
  LEFT JOIN patron p ON p.id = a.patron_id
  LEFT JOIN (SELECT patron, max(barcode) AS barcode FROM card WHERE active GROUP BY patron) c
         ON c.patron = a.patron_id
  LEFT JOIN (SELECT l.patron, count(*) AS n
               FROM circulation l
              WHERE l.checkin_at IS NULL AND l.stop_fines IS DISTINCT FROM 'LOST'
                AND l.due_at < now()
              GROUP BY l.patron) o ON o.patron = a.patron_id;
