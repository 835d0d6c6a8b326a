\set p random(1, :patrons)
\set days random(-5, 20)
INSERT INTO soak.circulation (patron, due_at) VALUES (:p, now() + :days * interval '1 day');
