-- Group Member Details for the family of patron 15 computed on demand from
-- the library's own tables, as Evergreen does: each member's open loans,
-- overdue, lost and balance owed (bills minus payments, voided ones left
-- out), then the group's totals.
WITH m AS (
    SELECT p.id, p.family_name || ', ' || p.given_name AS display_name, p.id = p.usrgroup AS is_lead,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL) AS items_out,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL
               AND c.stop_fines IS DISTINCT FROM 'LOST' AND c.due_at < now()) AS items_overdue,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL
               AND c.stop_fines = 'LOST') AS items_lost,
           (SELECT coalesce(sum(amount), 0) FROM billing b WHERE b.patron = p.id AND NOT b.voided)
         - (SELECT coalesce(sum(amount), 0) FROM payment y WHERE y.patron = p.id AND NOT y.voided) AS balance_owed
      FROM patron p
     WHERE p.usrgroup = (SELECT usrgroup FROM patron WHERE id = 15))
SELECT * FROM (
    SELECT id, display_name, is_lead, items_out, items_overdue, items_lost, balance_owed FROM m
    UNION ALL
    SELECT NULL, 'Group total', NULL, sum(items_out), sum(items_overdue), sum(items_lost), sum(balance_owed) FROM m) x
ORDER BY id IS NULL, is_lead DESC, display_name, id;
