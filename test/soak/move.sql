\set p random(1, :patrons)
\set q random(1, :patrons)
SELECT soak.move(:p, :q) WHERE :p <> :q;
