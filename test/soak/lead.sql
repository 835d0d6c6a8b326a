\set p random(1, :patrons)
\set on random(0, 1)
SELECT soak.lead(:p, :on = 1);
