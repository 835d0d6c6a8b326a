\set x random(1, 2 * :patrons)
\set cents random(25, 1000)
INSERT INTO soak.payment (xact, amount) VALUES (:x, :cents / 100.0);
