-- a patron merge, ordered as Evergreen's actor.usr_merge does it: the
-- billable transactions first, then the loans, in one transaction
\set from random(1, :patrons)
\set to random(1, :patrons)
BEGIN;
UPDATE soak.xact SET patron = :to WHERE patron = :from;
UPDATE soak.circulation SET patron = :to WHERE patron = :from;
COMMIT;
