\set p random(1, 100000 * :scale)
UPDATE circulation SET checkin_at = now()
 WHERE id = (SELECT id FROM circulation WHERE patron = :p AND checkin_at IS NULL LIMIT 1);
