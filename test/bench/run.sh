#!/usr/bin/env bash
# make bench: the benchmarks of BENCHMARKS.md, side by side in one run on a
# throwaway server.  SCALE=10 make bench for ten times the data; T=seconds
# per pgbench run (default 20), ROUNDS (default 3).
#
# BENCH_ONLY=reporting make bench: section 7 alone (the reporting views
# against hand-written joins, test/bench/reporting/section.sh): the library
# is generated and copied into bench_report only, with no other database,
# callgrind or pgbench mix.  Its knobs: REPORT_ROUNDS (default ROUNDS) rounds
# of the whole-view queries, LOOKUP_T (default 10) seconds and
# LOOKUP_CLIENTS (default 1) clients per pgbench run of a lookup.
# BENCH_PORT (default 54370) and BENCH_WORK (default /tmp/patron_group-bench)
# let two runs share a machine.  PGBIN (scripts/common.sh) picks the
# PostgreSQL installation the extension is built, installed and run with.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"

SCALE=${SCALE:-1}
T=${T:-20}
ROUNDS=${ROUNDS:-3}
WORK=${BENCH_WORK:-/tmp/patron_group-bench}
PORT=${BENCH_PORT:-54370}
ONLY=${BENCH_ONLY:-}
case $ONLY in
    ''|reporting) ;;
    *) echo "BENCH_ONLY=$ONLY: the only section that runs alone is reporting" >&2; exit 2 ;;
esac

ensure_packages
ensure_user
[ -d "$WORK/server/data" ] && stop_server "$WORK/server"
rm -rf "$WORK"; mkdir -p "$WORK"; chmod 755 "$WORK"
build_and_install "$WORK"
start_server "$WORK/server" $PORT
trap 'stop_server "$WORK/server"' EXIT
B=$BUILD_DIR/test/bench
as_user $PGBIN/psql -X -q -d postgres -c "ALTER SYSTEM SET shared_buffers = '2GB'" \
    -c "ALTER SYSTEM SET synchronous_commit = off" -c "ALTER SYSTEM SET max_wal_size = '8GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '30min'" -c "ALTER SYSTEM SET work_mem = '64MB'"
as_user $PGBIN/pg_ctl -D "$WORK/server/data" -w -l "$WORK/server/server.log" restart >/dev/null

P() { as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" $PGBIN/psql -X -q -v ON_ERROR_STOP=1 "$@"; }
PB() { as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" $PGBIN/pgbench -n "$@"; }
OUT=$WORK/results.md
: >"$OUT"
log() { echo "$*" | tee -a "$OUT"; }

say "generating the library (scale $SCALE)"
P -d postgres -c "CREATE DATABASE bench_none"
t0=$(date +%s.%N)
P -d bench_none -v scale=$SCALE -f "$B/schema.sql"
awk -v a=$t0 -v b=$(date +%s.%N) 'BEGIN{printf "%.2f s\n", b-a}' >"$WORK/gen.time"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# section 7 gets a copy of the library as generated, untouched by the others
P -d postgres -c "CREATE DATABASE bench_report TEMPLATE bench_none"
if [ "$ONLY" = reporting ]; then
    log "# Benchmark run $(date -u '+%Y-%m-%d %H:%M UTC'), BENCH_ONLY=reporting"
    log ""
    log "PostgreSQL $(P -d postgres -Atc 'SHOW server_version'), $(nproc) cores, scale $SCALE:" \
        "$(P -d bench_none -Atc "SELECT format('%s patrons, %s loans, %s bills, %s payments', (SELECT count(*) FROM patron), (SELECT count(*) FROM circulation), (SELECT count(*) FROM billing), (SELECT count(*) FROM payment))")."
    log "Settings: shared_buffers 2GB, work_mem 64MB, synchronous_commit off. Generation took $(cat $WORK/gen.time)."
    log ""
    source "$B/reporting/section.sh"
    echo
    cat "$OUT"
    cp "$OUT" "$WORK-results.md"
    exit 0
fi
for db in bench_ext bench_plpgsql; do P -d postgres -c "CREATE DATABASE $db TEMPLATE bench_none"; done
P -d bench_plpgsql -f "$B/peer.sql"
say "attaching the extension"
t0=$(date +%s.%N)
P -d bench_ext -f "$B/extension.sql" >/dev/null
awk -v a=$t0 -v b=$(date +%s.%N) 'BEGIN{printf "%.2f s\n", b-a}' >"$WORK/attach.time"

# Instructions, not time: the same mix counted by callgrind in a single-user
# backend, so that the comparison does not depend on what else the machine
# is doing.  It runs first, while the three databases hold the same library.
say "instructions per operation (callgrind)"
if ! command -v valgrind >/dev/null; then
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
for db in bench_none bench_ext bench_plpgsql; do P -d $db -f "$B/cpu.sql"; P -d $db -c "VACUUM ANALYZE"; done
stop_server "$WORK/server"
IN=${INSTR_N:-2000}
declare -A IR
for db in bench_none bench_ext bench_plpgsql; do
    for n in 0 $IN; do
        echo "CALL bench_mix($n);" | as_user valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            $PGBIN/postgres --single -D "$WORK/server/data" -c synchronous_commit=off $db >"$WORK/callgrind.$db.$n.log" 2>&1
    done
    a=$(grep -o 'Collected : [0-9]*' "$WORK/callgrind.$db.0.log" | grep -o '[0-9]*$')
    b=$(grep -o 'Collected : [0-9]*' "$WORK/callgrind.$db.$IN.log" | grep -o '[0-9]*$')
    IR[$db]=$(( (b - a) / IN ))
    echo "  $db: ${IR[$db]} instructions per operation"
done
as_user $PGBIN/pg_ctl -D "$WORK/server/data" -w -l "$WORK/server/server.log" \
    -o "-p $PORT -k $WORK/server/socket -c listen_addresses=''" start >/dev/null
en=$(( IR[bench_ext] - IR[bench_none] )); pn=$(( IR[bench_plpgsql] - IR[bench_none] ))

log "# Benchmark run $(date -u '+%Y-%m-%d %H:%M UTC')"
log ""
log "PostgreSQL $(P -d postgres -Atc 'SHOW server_version'), $(nproc) cores, scale $SCALE:" \
    "$(P -d bench_none -Atc "SELECT format('%s patrons, %s loans, %s bills, %s payments', (SELECT count(*) FROM patron), (SELECT count(*) FROM circulation), (SELECT count(*) FROM billing), (SELECT count(*) FROM payment))")."
log "Settings: shared_buffers 2GB, synchronous_commit off (so that commit flushes do not hide the triggers' CPU cost) except where a section says otherwise, pgbench -c 2 -j 2 -T $T, $ROUNDS rounds, variants alternated."
log "Generation took $(cat $WORK/gen.time); attaching (initial totals for every patron, grouping $(P -d bench_ext -Atc 'SELECT count(*) FROM patron_group.groups') families) took $(cat $WORK/attach.time)."
log ""

say "transaction mix"
MIX=(-c 2 -j 2 -T "$T" -D scale=$SCALE -f "$B/checkout.sql@30" -f "$B/checkin.sql@30" -f "$B/bill.sql@25" -f "$B/payment.sql@15")
declare -A TPS LOST
log "## 1. Transaction mix (checkout 30%, checkin 30%, bill 25%, payment 15%)"
log ""
log "Each round runs the three variants one after the other (A B C), under each commit setting; medians of $ROUNDS rounds."
log ""
log "| synchronous_commit | variant | tps per round | median tps | throughput lost |"
log "|---|---|---|---|---|"
for sc in on off; do
    for r in $(seq 1 "$ROUNDS"); do
        for db in bench_none bench_ext bench_plpgsql; do
            t=$(as_user env PGOPTIONS="-c synchronous_commit=$sc" PGHOST="$PGHOST" PGPORT="$PGPORT" \
                  $PGBIN/pgbench -n "${MIX[@]}" -d $db 2>&1 | awk '/^tps/ {print $3}')
            echo "  synchronous_commit=$sc round $r $db: $t tps"
            TPS[$sc.$db]+="$t "
        done
    done
    none=$(echo ${TPS[$sc.bench_none]} | tr ' ' '\n' | median)
    ext=$(echo ${TPS[$sc.bench_ext]} | tr ' ' '\n' | median)
    plp=$(echo ${TPS[$sc.bench_plpgsql]} | tr ' ' '\n' | median)
    LOST[$sc]=$(awk -v a=$none -v b=$ext 'BEGIN{printf "%.3f", 1-b/a}')
    LOST[$sc.peer]=$(awk -v a=$none -v b=$plp 'BEGIN{printf "%.3f", 1-b/a}')
    log "| $sc | no triggers | ${TPS[$sc.bench_none]}| $none | |"
    log "| $sc | patron_group | ${TPS[$sc.bench_ext]}| $ext | $(awk -v a=$none -v b=$ext 'BEGIN{printf "%.1f%%", 100*(1-b/a)}') |"
    log "| $sc | PL/pgSQL peer | ${TPS[$sc.bench_plpgsql]}| $plp | $(awk -v a=$none -v b=$plp 'BEGIN{printf "%.1f%%", 100*(1-b/a)}') |"
done
log ""
log "Targets: patron_group loses at most 10% of the throughput with synchronous_commit on (what libraries run), at most 20% with it off."
log "verify() after the mix: $(P -d bench_ext -Atc 'SELECT count(*) FROM patron_group.verify()') rows."
log ""

say "where the time goes (backend CPU per operation)"
N=${CPU_N:-20000}
declare -A CPU
for r in $(seq 1 "$ROUNDS"); do
    for proc in bench_mix bench_renew bench_summary_update; do
        for db in bench_none bench_ext bench_plpgsql; do
            us=$(printf '%s\n' 'SELECT bench_cpu_ticks() AS t0 \gset' "CALL $proc($N);" \
                   "SELECT round((bench_cpu_ticks() - :t0) * 10000.0 / $N, 1);" | P -d $db -At)
            echo "  round $r $proc $db: $us us"
            CPU[$proc.$db]+="$us "
        done
    done
done
cm() { echo ${CPU[$1.$2]} | tr ' ' '\n' | median; }
log "## 1b. Where the time goes: backend CPU per operation ($N operations, one transaction each, run inside the backend)"
log ""
log "| operation | no triggers | patron_group | PL/pgSQL peer | patron_group overhead | peer overhead | ratio |"
log "|---|---|---|---|---|---|---|"
for proc in bench_mix bench_renew; do
    a=$(cm $proc bench_none); b=$(cm $proc bench_ext); c=$(cm $proc bench_plpgsql)
    log "| $proc | $a µs | $b µs | $c µs | $(awk -v a=$a -v b=$b 'BEGIN{printf "%.1f", b-a}') µs | $(awk -v a=$a -v c=$c 'BEGIN{printf "%.1f", c-a}') µs | $(awk -v a=$a -v b=$b -v c=$c 'BEGIN{printf "%.2f", (b-a)/(c-a)}') |"
done
log "| the summary-row UPDATE alone | | $(cm bench_summary_update bench_ext) µs | $(cm bench_summary_update bench_plpgsql) µs | | | |"
log ""
log "bench_mix is the pgbench mix run inside the backend; bench_renew is a statement both implementations' triggers fire on that changes nothing counted (their fixed cost); the last row is one UPDATE of a patron's summary row and its commit, which every implementation that stores totals must pay per operation. Medians of $ROUNDS rounds, CPU ticks of 10 ms from /proc/self/stat."
log "verify() after these: $(P -d bench_ext -Atc 'SELECT count(*) FROM patron_group.verify()') rows."
log ""

say "bulk INSERT ... SELECT"
NP=$((100000 * SCALE))
BULK_LOANS="INSERT INTO circulation (patron, item, due_at) SELECT 1 + (i * 31) % $NP, i, now() FROM generate_series(1, 10 * $NP) i"
BULK_BILLS="INSERT INTO billing (patron, amount) SELECT 1 + (i * 31) % ($NP / 10), 0.25 FROM generate_series(1, 2 * $NP) i"
# bulk NAME SQL: backend CPU (ms) and wall time (ms) of SQL in a transaction rolled back
declare -A BC BW
bulk() {
    local name=$1 sql=$2 r db out
    for r in $(seq 1 "$ROUNDS"); do
        for db in bench_none bench_ext bench_plpgsql; do
            out=$(printf '%s\n' 'SELECT bench_cpu_ticks() AS t0, clock_timestamp() AS w0 \gset' 'BEGIN;' "$sql;" \
                    "SELECT (bench_cpu_ticks() - :t0) * 10, round(extract(epoch FROM clock_timestamp() - :'w0'::timestamptz) * 1000);" \
                    'ROLLBACK;' | P -d $db -At)
            echo "  round $r $name $db: $out (CPU ms|wall ms)"
            BC[$name.$db]+="${out%%|*} "; BW[$name.$db]+="${out##*|} "
        done
    done
}
bulk loans "$BULK_LOANS"
bulk bills "$BULK_BILLS"
bm() { echo ${BC[$1.$2]} | tr ' ' '\n' | median; }
wm() { echo ${BW[$1.$2]} | tr ' ' '\n' | median; }
log "## 2. Bulk: one INSERT ... SELECT (timed, then rolled back)"
log ""
log "Backend CPU (utime + stime of the backend, ticks of 10 ms) and wall time, medians of $ROUNDS rounds."
log ""
log "| statement | variant | CPU ms per round | median CPU ms | CPU ratio to no triggers | median wall ms |"
log "|---|---|---|---|---|---|"
declare -A BR
for name in loans bills; do
    case $name in
        loans) what="$((10 * NP)) loans onto $NP patrons" ;;
        bills) what="$((2 * NP)) bills onto $((NP / 10)) patrons" ;;
    esac
    a=$(bm $name bench_none)
    for db in bench_none bench_ext bench_plpgsql; do
        case $db in bench_none) v="no triggers" ;; bench_ext) v=patron_group ;; *) v="PL/pgSQL peer" ;; esac
        log "| $what | $v | ${BC[$name.$db]}| $(bm $name $db) | $(awk -v a=$a -v b=$(bm $name $db) 'BEGIN{printf "%.2f", b/a}') | $(wm $name $db) |"
    done
    BR[$name]=$(awk -v a=$a -v b=$(bm $name bench_ext) 'BEGIN{printf "%.2f", b/a}')
done
log ""
log "Target: patron_group at most 1.3x the bare insert's backend CPU."
log ""

say "a nightly fine run: 10,000 single-row bills in one transaction"
NIGHTLY=$WORK/nightly.sql
awk -v n=10000 -v np=2000 'BEGIN { for (i = 1; i <= n; i++) printf "INSERT INTO billing (patron, amount) VALUES (%d, 0.25);\n", 1 + (i * 7919) % np }' >"$NIGHTLY"
chmod 644 "$NIGHTLY"
declare -A NC
for r in $(seq 1 "$ROUNDS"); do
    for db in bench_none bench_ext bench_plpgsql; do
        out=$(printf '%s\n' 'SELECT bench_cpu_ticks() AS t0 \gset' 'BEGIN;' "\\i $NIGHTLY" \
                "SELECT (bench_cpu_ticks() - :t0) * 10;" 'ROLLBACK;' | P -d $db -At)
        echo "  round $r nightly $db: $out CPU ms"
        NC[$db]+="$out "
    done
done
na=$(echo ${NC[bench_none]} | tr ' ' '\n' | median)
ne=$(echo ${NC[bench_ext]} | tr ' ' '\n' | median)
np_=$(echo ${NC[bench_plpgsql]} | tr ' ' '\n' | median)
NIGHT_RATIO=$(awk -v a=$na -v b=$ne -v c=$np_ 'BEGIN{printf "%.2f", (b-a)/(c-a)}')
log "## 2b. A nightly fine run: one transaction of 10,000 single-row bill INSERT statements for 2,000 patrons (through psql, rolled back)"
log ""
log "| variant | backend CPU ms per round | median | overhead |"
log "|---|---|---|---|"
log "| no triggers | ${NC[bench_none]}| $na | |"
log "| patron_group | ${NC[bench_ext]}| $ne | $((ne - na)) ms |"
log "| PL/pgSQL peer | ${NC[bench_plpgsql]}| $np_ | $((np_ - na)) ms |"
log ""
log "Extension overhead / PL/pgSQL overhead: $NIGHT_RATIO."
log ""

say "Group Member Details for a family of 6"
declare -A LAT
for r in $(seq 1 "$ROUNDS"); do
    for f in members_ext members_sql; do
        l=$(PB -c 1 -T "$T" -f "$B/$f.sql" -d bench_ext 2>&1 | awk '/latency average/ {print $4}')
        echo "  round $r $f: $l ms"
        LAT[$f]+="$l "
    done
done
le=$(echo ${LAT[members_ext]} | tr ' ' '\n' | median)
ls_=$(echo ${LAT[members_sql]} | tr ' ' '\n' | median)
log "## 3. Group Member Details for a family of 6 (one client, latency)"
log ""
log "| query | ms per round | median ms |"
log "|---|---|---|"
log "| patron_group.group_members(15) | ${LAT[members_ext]}| $le |"
log "| the same figures computed on demand with plain SQL | ${LAT[members_sql]}| $ls_ |"
log ""
log "Ratio extension / plain SQL: $(awk -v a=$le -v b=$ls_ 'BEGIN{printf "%.2f", a/b}') (aim: extension under 1 ms)."
log ""

say "lead access through row-level security"
P -d bench_ext -c "SELECT patron_group.protect('circulation')" >/dev/null
declare -A RL
for r in $(seq 1 "$ROUNDS"); do
    for f in lead_reads staff_reads; do
        user=$RUN_USER; [ $f = lead_reads ] && user=bench_opac
        l=$(PB -c 1 -T "$T" -r -f "$B/$f.sql" -d bench_ext -U $user 2>&1 | awk '/FROM circulation/ && $1 ~ /^[0-9.]+$/ {print $1}')
        echo "  round $r $f: $l ms"
        RL[$f]+="$l "
    done
done
rl=$(echo ${RL[lead_reads]} | tr ' ' '\n' | median)
rs=$(echo ${RL[staff_reads]} | tr ' ' '\n' | median)
log "## 4. A lead reading the open loans of a family of 6 (statement latency, pgbench -r)"
log ""
log "| reader | ms per round | median ms |"
log "|---|---|---|"
log "| lead (patron-facing, through the policy) | ${RL[lead_reads]}| $rl |"
log "| staff, the same rows, no policy applies | ${RL[staff_reads]}| $rs |"
log ""
log "Ratio: $(awk -v a=$rl -v b=$rs 'BEGIN{printf "%.2f", a/b}') (target: at most 1.2)."
log ""

say "backend memory over a million trigger calls"
log "## 5. Backend memory over 1,000,000 single-row INSERT statements in one session"
log ""
log "| statements | memory contexts (kB) | RssAnon, private memory (kB) |"
log "|---|---|---|"
P -d bench_ext -v ON_ERROR_STOP=1 -At <<'SQL' | grep '^|' | tee -a "$OUT"
CREATE TEMP TABLE mem (n int, ctx bigint, rss bigint);
CREATE FUNCTION pg_temp.sample(n int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO mem SELECT n, (SELECT sum(total_bytes) / 1024 FROM pg_backend_memory_contexts),
        (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'RssAnon:\s+(\d+)'))[1]::bigint $$;
SELECT pg_temp.sample(0);
DO $$ BEGIN
    FOR i IN 1..1000000 LOOP
        INSERT INTO circulation (patron, item, due_at) VALUES (1 + i % 100000, i, now());
        IF i % 250000 = 0 THEN PERFORM pg_temp.sample(i); COMMIT; END IF;
    END LOOP;
END $$;
SELECT format('| %s | %s | %s |', n, ctx, rss) FROM mem ORDER BY n;
SQL
log ""
log "verify() at the end: $(P -d bench_ext -Atc 'SELECT count(*) FROM patron_group.verify()') rows."
log ""

log "## 6. Instructions per operation of the mix (callgrind, $IN operations in a single-user backend, measured first, on the freshly generated library)"
log ""
log "| variant | instructions per operation | overhead | overhead / bare operation |"
log "|---|---|---|---|"
log "| no triggers | ${IR[bench_none]} | | |"
log "| patron_group | ${IR[bench_ext]} | $en | $(awk -v a=$en -v b=${IR[bench_none]} 'BEGIN{printf "%.0f%%", 100*a/b}') |"
log "| PL/pgSQL peer | ${IR[bench_plpgsql]} | $pn | $(awk -v a=$pn -v b=${IR[bench_none]} 'BEGIN{printf "%.0f%%", 100*a/b}') |"
log ""
log "Extension overhead / PL/pgSQL overhead, in instructions: $(awk -v a=$en -v b=$pn 'BEGIN{printf "%.2f", a/b}') (target: at most 0.5); extension overhead / bare operation: at most 50%."
log ""

# The ratios against their targets, as a chart (test/bench/ratios.svg)
{
    printf 'instructions: overhead / peer overhead\t%s\t0.5\t\n' "$(awk -v a=$en -v b=$pn 'BEGIN{printf "%.2f", a/b}')"
    printf 'instructions: overhead / bare operation\t%s\t0.5\t\n' "$(awk -v a=$en -v b=${IR[bench_none]} 'BEGIN{printf "%.2f", a/b}')"
    printf 'mix, synchronous_commit on: throughput lost\t%s\t0.10\t\n' "${LOST[on]}"
    printf 'mix, synchronous_commit off: throughput lost\t%s\t0.20\t\n' "${LOST[off]}"
    printf 'bulk loans: CPU / bare insert\t%s\t1.3\t\n' "${BR[loans]}"
    printf 'bulk bills (repeated patrons): CPU / bare\t%s\t1.3\t\n' "${BR[bills]}"
    printf 'nightly fines: overhead / peer overhead\t%s\t0.5\t\n' "$NIGHT_RATIO"
} >"$WORK/ratios.tsv"
awk -F'\t' -v title="patron_group benchmark ratios, $(date -u '+%Y-%m-%d'), scale $SCALE" \
    -f "$B/plot.awk" "$WORK/ratios.tsv" >"$TOP/test/bench/ratios.svg"
log "The ratios against their targets: test/bench/ratios.svg."
log ""

source "$B/reporting/section.sh"
echo
cat "$OUT"
cp "$OUT" "$WORK-results.md"
