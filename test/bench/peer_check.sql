-- Variant C's own verify(): how many peer_account and peer_group rows differ
-- from a fresh count of the library's tables (0 when the triggers kept up).
WITH fresh AS (
    SELECT p.id AS patron_id, g.group_id,
           coalesce(c.o, 0) AS items_out, coalesce(c.l, 0) AS items_lost,
           coalesce(b.b, 0) AS amount_billed, coalesce(y.y, 0) AS amount_paid
      FROM patron p
      LEFT JOIN peer_group g ON g.group_id = p.usrgroup
      LEFT JOIN (SELECT patron, count(*) o, count(*) FILTER (WHERE stop_fines = 'LOST') l
                   FROM circulation WHERE checkin_at IS NULL GROUP BY patron) c ON c.patron = p.id
      LEFT JOIN (SELECT patron, sum(amount) b FROM billing WHERE NOT voided GROUP BY patron) b ON b.patron = p.id
      LEFT JOIN (SELECT patron, sum(amount) y FROM payment WHERE NOT voided GROUP BY patron) y ON y.patron = p.id),
fresh_group AS (
    SELECT group_id, sum(items_out) items_out, sum(items_lost) items_lost,
           sum(amount_billed) amount_billed, sum(amount_paid) amount_paid
      FROM fresh WHERE group_id IS NOT NULL GROUP BY group_id)
SELECT (SELECT count(*) FROM fresh f FULL JOIN peer_account a USING (patron_id)
         WHERE (f.items_out, f.items_lost, f.amount_billed, f.amount_paid)
               IS DISTINCT FROM (a.items_out, a.items_lost, a.amount_billed, a.amount_paid))
     + (SELECT count(*) FROM fresh_group f FULL JOIN peer_group g USING (group_id)
         WHERE (f.items_out, f.items_lost, f.amount_billed, f.amount_paid)
               IS DISTINCT FROM (g.items_out, g.items_lost, g.amount_billed, g.amount_paid));
