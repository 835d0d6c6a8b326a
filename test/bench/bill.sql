-- bill: a new charge for a random patron
\set p random(1, 100000 * :scale)
\set c random(1, 40)
INSERT INTO billing (patron, amount) VALUES (:p, :c * 0.25);
