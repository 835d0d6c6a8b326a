-- payment: a new payment by a random patron
\set p random(1, 100000 * :scale)
\set c random(1, 20)
INSERT INTO payment (patron, amount) VALUES (:p, :c * 0.25);
