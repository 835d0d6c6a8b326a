\set x random(1, 2 * :patrons)
\set cents random(25, 2000)
INSERT INTO soak.billing (xact, amount) VALUES (:x, :cents / 100.0);
