\set p random(1, 100000 * :scale)
INSERT INTO billing (patron, amount) VALUES (:p, 0.50);
