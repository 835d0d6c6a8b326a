-- pgbench -c 1 -t N -D n=0 -D calls=N: one backend, N transactions, each one
-- single-row INSERT (one trigger call), sampling the backend's memory at
-- the same points as bench_insert_loop().
\if :n = 0
SELECT bench_sample('separate transactions', 0);
\endif
\set n :n + 1
\set p 1 + (:n * 7919) % (100000 * :scale)
INSERT INTO circulation (patron, item, due_at) VALUES (:p, :n, now() + interval '21 days');
\if :n = 1000 or :n = 10000 or :n = 100000 or :n = 250000 or :n = 500000 or :n = 750000 or :n = :calls
SELECT bench_sample('separate transactions', :n);
\endif
