-- Every group_summary row, set-based (compared row for row with the view).
SELECT g.group_id,
       g.label,
       g.created_at,
       g.member_count,
       g.lead_count,
       g.items_out,
       COALESCE(o.n, 0) AS items_overdue,
       g.items_lost,
       g.amount_billed,
       g.amount_paid,
       g.balance_owed,
       g.items_claims_returned,
       g.items_long_overdue
  FROM patron_group.groups g
  LEFT JOIN (SELECT a.group_id, count(*) AS n
               FROM patron_group.accounts a
               JOIN circulation l ON l.patron = a.patron_id
              WHERE a.group_id IS NOT NULL
                AND l.checkin_at IS NULL AND l.stop_fines IS DISTINCT FROM 'LOST'
                AND l.due_at < now()
              GROUP BY a.group_id) o ON o.group_id = g.group_id;
