-- Helpers of the backend memory benchmark (run in the patron_group
-- database): a sampler recording this backend's memory, and a loop doing N
-- separate single-row INSERT statements (each fires the statement-level
-- trigger once) inside one transaction.
CREATE TABLE bench_memory (
    test            text    NOT NULL,
    calls           bigint  NOT NULL,
    contexts_kb     bigint  NOT NULL,   -- sum of total_bytes of pg_backend_memory_contexts
    rss_anon_kb     bigint,             -- /proc/<pid>/status RssAnon: private memory
    vm_rss_kb       bigint,             -- VmRSS: also counts the shared buffers touched
    sampled_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION bench_sample(test text, calls bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO bench_memory (test, calls, contexts_kb, rss_anon_kb, vm_rss_kb)
    SELECT test, calls,
           (SELECT sum(total_bytes) / 1024 FROM pg_backend_memory_contexts),
           (regexp_match(s, 'RssAnon:\s+(\d+)'))[1]::bigint,
           (regexp_match(s, 'VmRSS:\s+(\d+)'))[1]::bigint
      FROM pg_read_file('/proc/' || pg_backend_pid() || '/status') s
$$;

-- n single-row INSERT statements into circulation, for patrons cycling
-- through all of them (group members included); samples at the usual points.
CREATE FUNCTION bench_insert_loop(test text, n bigint, patrons bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bench_sample(test, 0);
    FOR i IN 1..n LOOP
        INSERT INTO circulation (patron, item, due_at)
        VALUES (1 + (i * 7919) % patrons, i, now() + interval '21 days');
        IF i IN (1000, 10000, 100000, 250000, 500000, 750000) OR i = n THEN
            PERFORM bench_sample(test, i);
        END IF;
    END LOOP;
END $$;
