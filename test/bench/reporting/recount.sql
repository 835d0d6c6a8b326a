-- A reference for verify(): the per-patron totals recounted by hand, one
-- aggregate over each attached table (loans, bills, payments), compared with
-- patron_group.accounts, and the groups' sums of their members compared with
-- patron_group.groups.  Returns the number of patron and group rows that
-- differ (0 when healthy, as verify() returns no rows).
WITH loans AS (
    SELECT patron, count(*) FILTER (WHERE checkin_at IS NULL) AS o,
           count(*) FILTER (WHERE checkin_at IS NULL AND stop_fines = 'LOST') AS l
      FROM circulation GROUP BY patron),
bills AS (SELECT patron, sum(amount) AS b FROM billing WHERE NOT voided GROUP BY patron),
pays AS (SELECT patron, sum(amount) AS y FROM payment WHERE NOT voided GROUP BY patron),
members AS (
    SELECT group_id, count(*) AS n, count(*) FILTER (WHERE is_lead) AS leads,
           sum(items_out) AS o, sum(items_lost) AS l, sum(amount_billed) AS b, sum(amount_paid) AS y
      FROM patron_group.accounts WHERE group_id IS NOT NULL GROUP BY group_id)
SELECT (SELECT count(*)
          FROM patron_group.accounts a
          LEFT JOIN loans ON loans.patron = a.patron_id
          LEFT JOIN bills ON bills.patron = a.patron_id
          LEFT JOIN pays ON pays.patron = a.patron_id
         WHERE (a.items_out, a.items_lost, a.amount_billed, a.amount_paid)
               IS DISTINCT FROM (COALESCE(loans.o, 0), COALESCE(loans.l, 0),
                                 COALESCE(bills.b, 0), COALESCE(pays.y, 0)))
     + (SELECT count(*)
          FROM patron_group.groups g LEFT JOIN members m USING (group_id)
         WHERE (g.member_count, g.lead_count, g.items_out, g.items_lost, g.amount_billed, g.amount_paid)
               IS DISTINCT FROM (COALESCE(m.n, 0), COALESCE(m.leads, 0), COALESCE(m.o, 0),
                                 COALESCE(m.l, 0), COALESCE(m.b, 0), COALESCE(m.y, 0)))
       AS rows_that_differ;
