-- The PL/pgSQL peer: the same per-patron and per-group totals kept by
-- row-level AFTER triggers, as Evergreen keeps its money summaries.
CREATE TABLE peer_account (patron_id bigint PRIMARY KEY, group_id bigint, items_out bigint NOT NULL DEFAULT 0,
    items_lost bigint NOT NULL DEFAULT 0, amount_billed numeric NOT NULL DEFAULT 0, amount_paid numeric NOT NULL DEFAULT 0);
CREATE TABLE peer_group (group_id bigint PRIMARY KEY, items_out bigint NOT NULL DEFAULT 0,
    items_lost bigint NOT NULL DEFAULT 0, amount_billed numeric NOT NULL DEFAULT 0, amount_paid numeric NOT NULL DEFAULT 0);
INSERT INTO peer_account (patron_id) SELECT id FROM patron;
UPDATE peer_account a SET group_id = f.lead FROM family f WHERE f.member = a.patron_id;
INSERT INTO peer_group (group_id) SELECT DISTINCT lead FROM family;

CREATE FUNCTION peer_apply(p bigint, o bigint, l bigint, b numeric, y numeric) RETURNS void LANGUAGE plpgsql AS $$
DECLARE g bigint;
BEGIN
    IF p IS NULL OR (o = 0 AND l = 0 AND b = 0 AND y = 0) THEN RETURN; END IF;
    UPDATE peer_account SET items_out = items_out + o, items_lost = items_lost + l,
           amount_billed = amount_billed + b, amount_paid = amount_paid + y
     WHERE patron_id = p RETURNING group_id INTO g;
    IF g IS NOT NULL THEN
        UPDATE peer_group SET items_out = items_out + o, items_lost = items_lost + l,
               amount_billed = amount_billed + b, amount_paid = amount_paid + y WHERE group_id = g;
    END IF;
END $$;

CREATE FUNCTION peer_circulation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM peer_apply(OLD.patron, -(OLD.checkin_at IS NULL)::int, -(OLD.checkin_at IS NULL AND OLD.stop_fines IS NOT DISTINCT FROM 'LOST')::int, 0, 0);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM peer_apply(NEW.patron, (NEW.checkin_at IS NULL)::int, (NEW.checkin_at IS NULL AND NEW.stop_fines IS NOT DISTINCT FROM 'LOST')::int, 0, 0);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION peer_money() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE charge boolean := TG_ARGV[0] = 'charge';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.voided THEN
        PERFORM peer_apply(OLD.patron, 0, 0, CASE WHEN charge THEN -OLD.amount ELSE 0 END, CASE WHEN charge THEN 0 ELSE -OLD.amount END);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NOT NEW.voided THEN
        PERFORM peer_apply(NEW.patron, 0, 0, CASE WHEN charge THEN NEW.amount ELSE 0 END, CASE WHEN charge THEN 0 ELSE NEW.amount END);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER peer AFTER INSERT OR UPDATE OR DELETE ON circulation FOR EACH ROW EXECUTE FUNCTION peer_circulation();
CREATE TRIGGER peer AFTER INSERT OR UPDATE OR DELETE ON billing FOR EACH ROW EXECUTE FUNCTION peer_money('charge');
CREATE TRIGGER peer AFTER INSERT OR UPDATE OR DELETE ON payment FOR EACH ROW EXECUTE FUNCTION peer_money('payment');
-- initial totals (loans and money; group totals start from their members)
UPDATE peer_account a SET items_out = s.o, items_lost = s.l FROM (
    SELECT patron, count(*) FILTER (WHERE checkin_at IS NULL) o,
           count(*) FILTER (WHERE checkin_at IS NULL AND stop_fines = 'LOST') l FROM circulation GROUP BY 1) s
 WHERE s.patron = a.patron_id;
UPDATE peer_account a SET amount_billed = s.b FROM (
    SELECT patron, sum(amount) b FROM billing WHERE NOT voided GROUP BY 1) s WHERE s.patron = a.patron_id;
UPDATE peer_account a SET amount_paid = s.y FROM (
    SELECT patron, sum(amount) y FROM payment WHERE NOT voided GROUP BY 1) s WHERE s.patron = a.patron_id;
UPDATE peer_group g SET items_out = s.o, items_lost = s.l, amount_billed = s.b, amount_paid = s.y
  FROM (SELECT group_id, sum(items_out) o, sum(items_lost) l, sum(amount_billed) b, sum(amount_paid) y
          FROM peer_account WHERE group_id IS NOT NULL GROUP BY 1) s WHERE s.group_id = g.group_id;
VACUUM ANALYZE;
