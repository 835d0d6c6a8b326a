BEGIN;
SELECT 15;
SELECT id, patron, due_at FROM circulation WHERE checkin_at IS NULL AND patron = ANY ('{15,16,17,18,19,20}');
COMMIT;
