-- a patron merge, ordered as Evergreen's actor.usr_merge does it (the
-- billable transactions first, then the loans, in one transaction), and
-- locking first what it will reassign, as the README's Concurrency section
-- asks of a merge in several statements: without that, a checkin of one of
-- the loans between the two UPDATEs deadlocks with it
\set from random(1, :patrons)
\set to random(1, :patrons)
BEGIN;
SELECT count(*) FROM (SELECT FROM soak.xact WHERE patron = :from ORDER BY id FOR UPDATE) x;
SELECT count(*) FROM (SELECT FROM soak.circulation WHERE patron = :from ORDER BY id FOR UPDATE) c;
UPDATE soak.xact SET patron = :to WHERE patron = :from;
UPDATE soak.circulation SET patron = :to WHERE patron = :from;
COMMIT;
