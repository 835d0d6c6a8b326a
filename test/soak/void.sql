-- void a bill, or take a void back
\set b random(1, 2 * :patrons)
UPDATE soak.billing SET voided = NOT voided WHERE id = :b;
