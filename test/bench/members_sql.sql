-- Group Member Details for the family of patron 15 computed on demand, as
-- Evergreen does: per member counts of loans and money, then the totals.
WITH m AS (
    SELECT p.id, p.family_name || ', ' || p.given_name AS name,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL) AS items_out,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL
               AND c.stop_fines IS DISTINCT FROM 'LOST' AND c.due_at < now()) AS overdue,
           (SELECT count(*) FROM circulation c WHERE c.patron = p.id AND c.checkin_at IS NULL
               AND c.stop_fines = 'LOST') AS lost,
           (SELECT coalesce(sum(amount), 0) FROM billing b WHERE b.patron = p.id AND NOT b.voided)
         - (SELECT coalesce(sum(amount), 0) FROM payment y WHERE y.patron = p.id AND NOT y.voided) AS owed
      FROM patron p WHERE p.id IN (SELECT member FROM family WHERE lead = (SELECT lead FROM family WHERE member = 15)))
SELECT id, name, items_out, overdue, lost, owed FROM m
UNION ALL SELECT NULL, 'Group total', sum(items_out), sum(overdue), sum(lost), sum(owed) FROM m;
