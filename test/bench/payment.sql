\set p random(1, 100000 * :scale)
INSERT INTO payment (patron, amount) VALUES (:p, 0.50);
