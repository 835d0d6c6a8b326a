-- Variant C: the same per-patron and per-group totals kept the way
-- Evergreen keeps its money summaries: PL/pgSQL row-level AFTER triggers
-- that, for each changed row, UPDATE the patron's summary row and then its
-- group's.  The summary tables have the same columns, keys and fillfactor as
-- patron_group.accounts and patron_group.groups.  Groups are the families
-- of patron.usrgroup (patrons alone in their usrgroup are in no group).
CREATE TABLE peer_group (
    group_id        bigint PRIMARY KEY,
    items_out       bigint  NOT NULL DEFAULT 0,
    items_lost      bigint  NOT NULL DEFAULT 0,
    amount_billed   numeric NOT NULL DEFAULT 0,
    amount_paid     numeric NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE TABLE peer_account (
    patron_id       bigint PRIMARY KEY,
    group_id        bigint REFERENCES peer_group,
    items_out       bigint  NOT NULL DEFAULT 0,
    items_lost      bigint  NOT NULL DEFAULT 0,
    amount_billed   numeric NOT NULL DEFAULT 0,
    amount_paid     numeric NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
CREATE INDEX peer_account_group_id ON peer_account (group_id) WHERE group_id IS NOT NULL;

-- Loans: a row that is out counts 1 (and 1 lost when lost).  Each trigger
-- call works out at most two patron deltas (two only when an UPDATE moves a
-- loan to another patron) and applies each with two UPDATEs, inline, as
-- Evergreen's money.materialized_summary_* functions do.
CREATE FUNCTION peer_circulation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_o int := 0; old_l int := 0; new_o int := 0; new_l int := 0;
    p1 bigint; o1 int; l1 int; p2 bigint; o2 int; l2 int; g bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.checkin_at IS NULL THEN
        old_o := 1;
        old_l := (OLD.stop_fines IS NOT DISTINCT FROM 'LOST')::int;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.checkin_at IS NULL THEN
        new_o := 1;
        new_l := (NEW.stop_fines IS NOT DISTINCT FROM 'LOST')::int;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.patron = NEW.patron THEN
        IF new_o <> old_o OR new_l <> old_l THEN
            p1 := NEW.patron; o1 := new_o - old_o; l1 := new_l - old_l;
        END IF;
    ELSE
        IF old_o <> 0 THEN p1 := OLD.patron; o1 := -old_o; l1 := -old_l; END IF;
        IF new_o <> 0 THEN p2 := NEW.patron; o2 := new_o; l2 := new_l; END IF;
    END IF;
    IF p1 IS NOT NULL THEN
        UPDATE peer_account SET items_out = items_out + o1, items_lost = items_lost + l1
         WHERE patron_id = p1 RETURNING group_id INTO g;
        IF g IS NOT NULL THEN
            UPDATE peer_group SET items_out = items_out + o1, items_lost = items_lost + l1
             WHERE group_id = g;
        END IF;
    END IF;
    IF p2 IS NOT NULL THEN
        UPDATE peer_account SET items_out = items_out + o2, items_lost = items_lost + l2
         WHERE patron_id = p2 RETURNING group_id INTO g;
        IF g IS NOT NULL THEN
            UPDATE peer_group SET items_out = items_out + o2, items_lost = items_lost + l2
             WHERE group_id = g;
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- Money: a row that is not voided counts its amount, as billed (TG_ARGV[0]
-- 'charge') or as paid ('payment').
CREATE FUNCTION peer_money() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    charge boolean := TG_ARGV[0] = 'charge';
    old_a numeric := 0; new_a numeric := 0;
    p1 bigint; a1 numeric; p2 bigint; a2 numeric; g bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND NOT OLD.voided THEN old_a := OLD.amount; END IF;
    IF TG_OP <> 'DELETE' AND NOT NEW.voided THEN new_a := NEW.amount; END IF;
    IF TG_OP = 'UPDATE' AND OLD.patron = NEW.patron THEN
        IF new_a <> old_a THEN p1 := NEW.patron; a1 := new_a - old_a; END IF;
    ELSE
        IF old_a <> 0 THEN p1 := OLD.patron; a1 := -old_a; END IF;
        IF new_a <> 0 THEN p2 := NEW.patron; a2 := new_a; END IF;
    END IF;
    IF p1 IS NOT NULL THEN
        IF charge THEN
            UPDATE peer_account SET amount_billed = amount_billed + a1
             WHERE patron_id = p1 RETURNING group_id INTO g;
            IF g IS NOT NULL THEN
                UPDATE peer_group SET amount_billed = amount_billed + a1 WHERE group_id = g;
            END IF;
        ELSE
            UPDATE peer_account SET amount_paid = amount_paid + a1
             WHERE patron_id = p1 RETURNING group_id INTO g;
            IF g IS NOT NULL THEN
                UPDATE peer_group SET amount_paid = amount_paid + a1 WHERE group_id = g;
            END IF;
        END IF;
    END IF;
    IF p2 IS NOT NULL THEN
        IF charge THEN
            UPDATE peer_account SET amount_billed = amount_billed + a2
             WHERE patron_id = p2 RETURNING group_id INTO g;
            IF g IS NOT NULL THEN
                UPDATE peer_group SET amount_billed = amount_billed + a2 WHERE group_id = g;
            END IF;
        ELSE
            UPDATE peer_account SET amount_paid = amount_paid + a2
             WHERE patron_id = p2 RETURNING group_id INTO g;
            IF g IS NOT NULL THEN
                UPDATE peer_group SET amount_paid = amount_paid + a2 WHERE group_id = g;
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- Initial totals, then the triggers (nothing else writes meanwhile).
INSERT INTO peer_group (group_id)
SELECT usrgroup FROM patron GROUP BY usrgroup HAVING count(*) > 1;
INSERT INTO peer_account (patron_id, group_id, items_out, items_lost, amount_billed, amount_paid)
SELECT p.id, g.group_id, coalesce(c.o, 0), coalesce(c.l, 0), coalesce(b.b, 0), coalesce(y.y, 0)
  FROM patron p
  LEFT JOIN peer_group g ON g.group_id = p.usrgroup
  LEFT JOIN (SELECT patron, count(*) o, count(*) FILTER (WHERE stop_fines = 'LOST') l
               FROM circulation WHERE checkin_at IS NULL GROUP BY patron) c ON c.patron = p.id
  LEFT JOIN (SELECT patron, sum(amount) b FROM billing WHERE NOT voided GROUP BY patron) b ON b.patron = p.id
  LEFT JOIN (SELECT patron, sum(amount) y FROM payment WHERE NOT voided GROUP BY patron) y ON y.patron = p.id;
UPDATE peer_group g SET items_out = s.o, items_lost = s.l, amount_billed = s.b, amount_paid = s.y
  FROM (SELECT group_id, sum(items_out) o, sum(items_lost) l, sum(amount_billed) b, sum(amount_paid) y
          FROM peer_account WHERE group_id IS NOT NULL GROUP BY group_id) s
 WHERE s.group_id = g.group_id;

CREATE TRIGGER peer_totals AFTER INSERT OR UPDATE OR DELETE ON circulation
    FOR EACH ROW EXECUTE FUNCTION peer_circulation();
CREATE TRIGGER peer_totals AFTER INSERT OR UPDATE OR DELETE ON billing
    FOR EACH ROW EXECUTE FUNCTION peer_money('charge');
CREATE TRIGGER peer_totals AFTER INSERT OR UPDATE OR DELETE ON payment
    FOR EACH ROW EXECUTE FUNCTION peer_money('payment');
VACUUM ANALYZE;
