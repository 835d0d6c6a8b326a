BEGIN;
SELECT patron_group.act_as(15);
SELECT id, patron, due_at FROM circulation WHERE checkin_at IS NULL;
COMMIT;
