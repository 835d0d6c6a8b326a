-- Group limits that block checkout, and the staff override.
DO $$
DECLARE r regclass;
BEGIN
    FOR r IN SELECT relid FROM patron_group.attachments
             ORDER BY kind = 'patrons', kind = 'cards', relid::oid DESC LOOP
        PERFORM patron_group.detach(r);
    END LOOP;
END
$$;
CREATE SCHEMA lim;
CREATE TABLE lim.patron (id bigint PRIMARY KEY, name text);
CREATE TABLE lim.loan (id serial PRIMARY KEY, patron bigint, due timestamptz DEFAULT now() + interval '7 days',
                       returned timestamptz, lost boolean NOT NULL DEFAULT false);
CREATE TABLE lim.xact (id bigint PRIMARY KEY, patron bigint, created timestamptz NOT NULL);
CREATE TABLE lim.bill (id serial PRIMARY KEY, xact bigint, amount numeric(8,2));
CREATE TABLE lim.payment (id serial PRIMARY KEY, xact bigint, amount numeric(8,2));
CREATE INDEX ON lim.loan (patron);
CREATE INDEX ON lim.xact (patron);
CREATE INDEX ON lim.bill (xact);
CREATE INDEX ON lim.payment (xact);
INSERT INTO lim.patron VALUES (1, 'Ada'), (2, 'Ben'), (3, 'Cy'), (4, 'Dee'), (5, 'Eve');
SELECT patron_group.attach_patrons('lim.patron', name_columns => '{name}');
SELECT patron_group.attach_circulations('lim.loan', 'patron', 'due', open_when => 'returned IS NULL',
    lost_when => 'lost');
SELECT patron_group.attach_money('lim.bill', 'charge', 'amount', 'xact', via => 'lim.xact');
SELECT patron_group.attach_money('lim.payment', 'payment', 'amount', 'xact', via => 'lim.xact');
SELECT patron_group.move_to_group(2, 1) AS g1 \gset
SELECT patron_group.move_to_group(4, 3) AS g2 \gset
SELECT patron_group.enforce_limits('lim.loan', true);

-- no limits yet: everybody may borrow; patron 5 is in no group
SELECT * FROM patron_group.checkout_allowed(1);
SELECT * FROM patron_group.checkout_allowed(5);

-- bad inputs: a clear error each, nothing changed
SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.set_limits(NULL, max_items_out => -1)$$),
    ($$SELECT patron_group.set_limits(NULL, max_balance_owed => -0.01)$$),
    ($$SELECT patron_group.set_limits(NULL, max_balance_owed => 'NaN')$$),
    ($$SELECT patron_group.set_limits(NULL, max_balance_owed => 'Infinity')$$),
    ($$SELECT patron_group.set_limits(NULL, max_balance_owed => '-Infinity')$$),
    ($$SELECT patron_group.set_limits(999, max_items_out => 1)$$),
    ($$SELECT patron_group.checkout_allowed(NULL)$$),
    ($$SELECT patron_group.enforce_limits('lim.patron', true)$$),
    ($$SELECT patron_group.enforce_limits(NULL, true)$$),
    ($$SELECT patron_group.override_limits(NULL)$$),
    ($$SELECT patron_group.override_limits('  ')$$)
) AS t(stmt);
SELECT count(*) AS no_limits FROM patron_group.limits;

-- the default: 2 items out per group; group 2 overrides it with 3
SELECT patron_group.set_limits(NULL, max_items_out => 2);
SELECT patron_group.set_limits(:g2, max_items_out => 3);
INSERT INTO lim.loan (patron) VALUES (1);
SELECT * FROM patron_group.checkout_allowed(2);
INSERT INTO lim.loan (patron) VALUES (2);
SELECT * FROM patron_group.checkout_allowed(1);
-- refused: error text and SQLSTATE; the loan is not there
SELECT try($$INSERT INTO lim.loan (patron) VALUES (1)$$);
INSERT INTO lim.loan (patron) VALUES (2);
SELECT count(*) AS loans_of_group_1 FROM lim.loan WHERE patron IN (1, 2);
-- a statement with several loans counts them all
INSERT INTO lim.loan (patron) VALUES (3), (4);
SELECT try($$INSERT INTO lim.loan (patron) VALUES (3), (4)$$);
INSERT INTO lim.loan (patron) VALUES (4);
-- a patron in no group is never blocked; a loan that is not open is not a checkout
INSERT INTO lim.loan (patron) VALUES (5), (5), (5);
INSERT INTO lim.loan (patron, returned) VALUES (1, now());
-- a check-in makes room again
UPDATE lim.loan SET returned = now() WHERE patron = 2;
INSERT INTO lim.loan (patron) VALUES (2);

-- balance owed: 10.00 billed to the group, limit 5 for group 1 only
SELECT patron_group.set_limits(:g1, max_balance_owed => 5, max_items_out => 10);
INSERT INTO lim.xact VALUES (100, 1, '2024-01-01'), (101, 2, '2024-02-01'), (102, 1, '2024-03-01');
INSERT INTO lim.bill (xact, amount) VALUES (100, 4.00), (101, 3.50), (102, 2.50);
SELECT * FROM patron_group.checkout_allowed(2);
SELECT try($$INSERT INTO lim.loan (patron) VALUES (2)$$);
INSERT INTO lim.payment (xact, amount) VALUES (100, 5.00);
SELECT * FROM patron_group.checkout_allowed(2);

-- overdue and lost, from the default (group 1's own NULLs follow it)
SELECT patron_group.set_limits(NULL, max_items_overdue => 0, max_items_lost => 0);
UPDATE lim.loan SET due = now() - interval '1 day' WHERE patron = 1 AND returned IS NULL;
UPDATE lim.loan SET lost = true WHERE patron = 2 AND returned IS NULL;
SELECT * FROM patron_group.checkout_allowed(1);
SELECT try($$INSERT INTO lim.loan (patron) VALUES (1)$$);
-- group 2 follows the default too now (items out: its own 3)
SELECT * FROM patron_group.checkout_allowed(3);
SELECT group_id, max_balance_owed, max_items_out, max_items_overdue, max_items_lost
    FROM patron_group.limits ORDER BY group_id NULLS FIRST;

-- the override: one checkout statement of one transaction, recorded in the history
SET patron_group.application_user = 'desk-1';
BEGIN;
SELECT patron_group.override_limits('lost book found at home, returns tomorrow');
INSERT INTO lim.loan (patron) VALUES (1);
SELECT try($$INSERT INTO lim.loan (patron) VALUES (1)$$);
COMMIT;
RESET patron_group.application_user;
SELECT db_role = current_user AS by_me, app_user, action, patron_id, to_group = :g1 AS of_group_1,
       reason, detail
    FROM patron_group.history WHERE action = 'limit_override' ORDER BY event_id;
-- an override does not outlive its transaction
SELECT patron_group.override_limits('next time');
SELECT try($$INSERT INTO lim.loan (patron) VALUES (1)$$);

-- clearing: group 1 back to the default; the default removed
SELECT patron_group.clear_limits(:g1), patron_group.clear_limits(:g1);
SELECT patron_group.clear_limits(NULL);
SELECT * FROM patron_group.checkout_allowed(1);
-- a group that disappears takes its limits with it
SELECT patron_group.remove_from_group(3), patron_group.remove_from_group(4);
SELECT count(*) AS limits_left FROM patron_group.limits;

-- enforcement off: the trigger is gone
SELECT patron_group.set_limits(NULL, max_items_out => 0);
SELECT patron_group.enforce_limits('lim.loan', false);
INSERT INTO lim.loan (patron) VALUES (1);
SELECT patron_group.clear_limits(NULL);

-- rights: nothing for PUBLIC; staff get all but the override
CREATE ROLE regress_lim_staff;
SELECT patron_group.grant_staff('regress_lim_staff');
SELECT fn, has_function_privilege('regress_lim_staff', fn, 'EXECUTE') AS staff,
       has_function_privilege('public', fn, 'EXECUTE') AS public
    FROM unnest(ARRAY['patron_group.set_limits(bigint,numeric,bigint,bigint,bigint)',
                      'patron_group.clear_limits(bigint)', 'patron_group.checkout_allowed(bigint)',
                      'patron_group.override_limits(text)',
                      'patron_group.enforce_limits(regclass,boolean)',
                      'patron_group.payment_plan(bigint,numeric,bigint)']) AS fn;
-- changing a limit is not a staff right: lifting one and putting it back
-- would let any checkout through, unrecorded
SET ROLE regress_lim_staff;
SELECT try($$SELECT patron_group.set_limits(NULL, max_items_lost => 5)$$);
SELECT try($$SELECT patron_group.clear_limits(10)$$);
SELECT try($$SELECT patron_group.override_limits('why not')$$);
SELECT try($$DELETE FROM patron_group.limits$$);
RESET ROLE;
-- a supervisor may, and every change is in the history
CREATE ROLE regress_lim_supervisor;
SELECT patron_group.grant_supervisor('regress_lim_supervisor');
SET patron_group.application_user = 'supervisor-1';
SET ROLE regress_lim_supervisor;
SELECT patron_group.set_limits(NULL, max_items_lost => 5);
SELECT patron_group.set_limits(NULL, max_items_lost => 4, max_balance_owed => 2.50);
SELECT patron_group.clear_limits(NULL);
SELECT patron_group.clear_limits(NULL);       -- nothing to remove, nothing recorded
RESET ROLE;
RESET patron_group.application_user;
SELECT CASE WHEN db_role = current_user THEN '(the DBA)' ELSE db_role END AS db_role,
       app_user, action, patron_id, to_group, detail
    FROM patron_group.history WHERE action LIKE 'limits%' ORDER BY event_id;
SELECT patron_group.revoke_supervisor('regress_lim_supervisor');
SELECT has_function_privilege('regress_lim_supervisor', 'patron_group.set_limits(bigint,numeric,bigint,bigint,bigint)', 'EXECUTE') AS still_supervisor;
DROP ROLE regress_lim_supervisor;
SELECT patron_group.revoke_staff('regress_lim_staff');
DROP ROLE regress_lim_staff;

SELECT * FROM patron_group.verify();

-- Paying for the group: plans over the open balances, nothing written.
-- Transactions: 100 (patron 1) is paid off, 101 (patron 2) owes 3.50,
-- 102 (patron 1) 2.50, 103 (patron 2) 1.00; a fines table naming the
-- patron directly (signed, credits negative) gives patron 1 one more line.
INSERT INTO lim.xact VALUES (103, 2, '2024-04-01');
INSERT INTO lim.bill (xact, amount) VALUES (103, 1.00);
CREATE TABLE lim.fine (id serial PRIMARY KEY, patron bigint, amount numeric(8,2));
INSERT INTO lim.fine (patron, amount) VALUES (1, 2.00), (1, -0.50), (2, 1.00), (2, -1.00);
SELECT patron_group.attach_money('lim.fine', 'signed', 'amount', 'patron');
SELECT count(*) AS payments_before FROM lim.payment \gset
-- oldest first
SELECT * FROM patron_group.payment_plan(1, 5.00);
-- patron 1's bills first
SELECT * FROM patron_group.payment_plan(2, 5.00, first_member => 1);
-- more than is owed: every open balance in full, the rest is not placed
SELECT transaction_id, member_id, apply FROM patron_group.payment_plan(1, 100);
SELECT count(*) = :payments_before AS nothing_written FROM lim.payment;
-- the ILS inserts the plan into its own payment table; the totals follow
INSERT INTO lim.payment (xact, amount)
    SELECT transaction_id, apply FROM patron_group.payment_plan(1, 4.00) WHERE transaction_id IS NOT NULL;
SELECT * FROM patron_group.payment_plan(1, 100);
-- bad inputs
SELECT try(stmt) FROM (VALUES
    ($$SELECT patron_group.payment_plan(1, 0)$$),
    ($$SELECT patron_group.payment_plan(1, -1)$$),
    ($$SELECT patron_group.payment_plan(1, 'NaN')$$),
    ($$SELECT patron_group.payment_plan(1, NULL)$$),
    ($$SELECT patron_group.payment_plan(NULL, 1)$$),
    ($$SELECT patron_group.payment_plan(5, 1)$$),
    ($$SELECT patron_group.payment_plan(1, 1, first_member => 5)$$)
) AS t(stmt);
-- a lead, acting in a patron-facing session, sees consenting members only
CREATE ROLE regress_lim_opac;
SELECT patron_group.register_patron_facing('regress_lim_opac');
GRANT USAGE ON SCHEMA patron_group TO regress_lim_opac;
GRANT EXECUTE ON FUNCTION patron_group.act_as(bigint),
    patron_group.payment_plan(bigint, numeric, bigint) TO regress_lim_opac;
SELECT patron_group.set_lead(1);
SET ROLE regress_lim_opac;
BEGIN;
SELECT patron_group.act_as(1);
SELECT * FROM patron_group.payment_plan(1, 100);
SELECT try($$SELECT patron_group.payment_plan(1, 1, first_member => 2)$$);
SELECT try($$SELECT patron_group.payment_plan(2, 1)$$);
ROLLBACK;
RESET ROLE;
SELECT patron_group.set_consent(2, 'bills', true);
SET ROLE regress_lim_opac;
BEGIN;
SELECT patron_group.act_as(1);
SELECT * FROM patron_group.payment_plan(1, 100, first_member => 2);
ROLLBACK;
BEGIN;
SELECT patron_group.act_as(2);
SELECT try($$SELECT patron_group.payment_plan(2, 1)$$);
ROLLBACK;
RESET ROLE;
SELECT patron_group.unregister_patron_facing('regress_lim_opac');
REVOKE ALL ON FUNCTION patron_group.act_as(bigint),
    patron_group.payment_plan(bigint, numeric, bigint) FROM regress_lim_opac;
REVOKE USAGE ON SCHEMA patron_group FROM regress_lim_opac;
DROP ROLE regress_lim_opac;
SELECT * FROM patron_group.verify();

-- detach takes the enforcement trigger with it
SELECT patron_group.enforce_limits('lim.loan', true);
SELECT patron_group.detach('lim.loan');
SELECT count(*) AS limits_triggers FROM pg_trigger WHERE tgrelid = 'lim.loan'::regclass;
SELECT * FROM patron_group.verify();
