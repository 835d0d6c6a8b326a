\set p random(1, :patrons)
SELECT soak.remove(:p);
