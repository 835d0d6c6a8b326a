-- group_summary's count and overdue total: a group's overdue is the sum over
-- its members (patron_group.accounts.group_id) of their overdue loans.
SELECT count(*), sum(COALESCE(o.n, 0))
  FROM patron_group.groups g
  LEFT JOIN (SELECT a.group_id, count(*) AS n
               FROM patron_group.accounts a
               JOIN circulation l ON l.patron = a.patron_id
              WHERE a.group_id IS NOT NULL
                AND l.checkin_at IS NULL AND l.stop_fines IS DISTINCT FROM 'LOST'
                AND l.due_at < now()
              GROUP BY a.group_id) o ON o.group_id = g.group_id;
