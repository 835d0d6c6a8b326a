-- member_summary's count and overdue total, set-based: one aggregate over the
-- open, not lost, overdue loans (the bench library's attach_circulations:
-- open_when 'checkin_at IS NULL', lost_when 'stop_fines = ''LOST''', a NULL
-- condition counting as false), hash-joined to the accounts.
SELECT count(*), sum(COALESCE(o.n, 0))
  FROM patron_group.accounts a
  LEFT JOIN (SELECT l.patron, count(*) AS n
               FROM circulation l
              WHERE l.checkin_at IS NULL AND l.stop_fines IS DISTINCT FROM 'LOST'
                AND l.due_at < now()
              GROUP BY l.patron) o ON o.patron = a.patron_id;
