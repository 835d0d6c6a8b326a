-- one of the patron's open loans comes back, or (one time in ten) is marked lost
\set p random(1, :patrons)
\set lost random(0, 9)
UPDATE soak.circulation SET checkin_at = CASE WHEN :lost = 0 THEN NULL ELSE now() END,
       stop_fines = CASE WHEN :lost = 0 THEN 'LOST' END
 WHERE id = (SELECT id FROM soak.circulation WHERE patron = :p AND checkin_at IS NULL LIMIT 1);
