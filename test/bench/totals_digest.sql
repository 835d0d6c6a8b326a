-- A digest of the kept totals, to show that B (patron_group) and C (the
-- PL/pgSQL peer) start from the same figures: per patron, then per group
-- (a group named by its lowest member).  psql -v accounts=... -v groups=...
SELECT md5(string_agg(format('%s:%s:%s:%s:%s', patron_id, items_out, items_lost, amount_billed::numeric(16,2), amount_paid::numeric(16,2)),
                      ',' ORDER BY patron_id)) AS patrons
  FROM :accounts;
SELECT md5(string_agg(format('%s:%s:%s:%s:%s', first_member, items_out, items_lost, amount_billed::numeric(16,2), amount_paid::numeric(16,2)),
                      ',' ORDER BY first_member)) AS groups
  FROM (SELECT min(a.patron_id) AS first_member, g.items_out, g.items_lost, g.amount_billed, g.amount_paid
          FROM :accounts a JOIN :groups g ON g.group_id = a.group_id
         GROUP BY g.group_id, g.items_out, g.items_lost, g.amount_billed, g.amount_paid) s;
