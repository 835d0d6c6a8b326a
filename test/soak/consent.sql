\set p random(1, :patrons)
\set bills random(0, 1)
\set on random(0, 1)
SELECT soak.consent(:p, CASE WHEN :bills = 1 THEN 'bills' ELSE 'circulations' END, :on = 1);
