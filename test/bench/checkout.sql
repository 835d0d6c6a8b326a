\set p random(1, 100000 * :scale)
INSERT INTO circulation (patron, item, due_at) VALUES (:p, :p, now() + interval '21 days');
