-- Backend CPU time per operation, read from /proc/self/stat (utime + stime,
-- in clock ticks of 10 ms), for the "where the time goes" benchmark.  Each
-- procedure runs n operations, one transaction each (COMMIT in the loop), in
-- the backend itself, so no client round trip is counted.
CREATE FUNCTION bench_cpu_ticks() RETURNS bigint LANGUAGE sql AS $$
    SELECT split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint
      FROM pg_read_file('/proc/self/stat') s
$$;

-- the pgbench mix: checkout 30%, checkin 30%, bill 25%, payment 15%
CREATE PROCEDURE bench_mix(n int) LANGUAGE plpgsql AS $$
DECLARE p bigint; r int; np bigint := (SELECT max(id) FROM patron);
BEGIN
    FOR i IN 1..n LOOP
        p := 1 + (i::bigint * 7919 + 13) % np;
        r := i % 100;
        IF r < 30 THEN
            INSERT INTO circulation (patron, item, due_at) VALUES (p, p, now() + interval '21 days');
        ELSIF r < 60 THEN
            UPDATE circulation SET checkin_at = now()
             WHERE id = (SELECT id FROM circulation WHERE patron = p AND checkin_at IS NULL LIMIT 1);
        ELSIF r < 85 THEN
            INSERT INTO billing (patron, amount) VALUES (p, 0.50);
        ELSE
            INSERT INTO payment (patron, amount) VALUES (p, 0.50);
        END IF;
        COMMIT;
    END LOOP;
END $$;

-- a statement the triggers fire on but that changes nothing counted: a renewal
CREATE PROCEDURE bench_renew(n int) LANGUAGE plpgsql AS $$
DECLARE nc bigint := (SELECT max(id) FROM circulation);
BEGIN
    FOR i IN 1..n LOOP
        UPDATE circulation SET due_at = due_at + interval '1 day' WHERE id = 1 + (i::bigint * 7919 + 13) % nc;
        COMMIT;
    END LOOP;
END $$;

-- the summary-row update alone, as each implementation writes it
CREATE PROCEDURE bench_summary_update(n int) LANGUAGE plpgsql AS $$
DECLARE p bigint; g bigint; np bigint := (SELECT max(id) FROM patron);
BEGIN
    FOR i IN 1..n LOOP
        p := 1 + (i::bigint * 7919 + 13) % np;
        IF to_regclass('patron_group.accounts') IS NOT NULL THEN
            UPDATE patron_group.accounts SET items_out = items_out + 0, items_lost = items_lost + 0,
                   amount_billed = amount_billed + 0, amount_paid = amount_paid + 0
             WHERE patron_id = p RETURNING group_id INTO g;
        ELSIF to_regclass('peer_account') IS NOT NULL THEN
            UPDATE peer_account SET items_out = items_out + 0, items_lost = items_lost + 0,
                   amount_billed = amount_billed + 0, amount_paid = amount_paid + 0
             WHERE patron_id = p RETURNING group_id INTO g;
        END IF;
        COMMIT;
    END LOOP;
END $$;
