\set p random(1, :patrons)
\set q random(1, :patrons)
SELECT soak.rebuild(ARRAY[:p, :q]::bigint[]);
