#!/usr/bin/env bash
# patron_group benchmarks (make bench): every benchmark of BENCHMARKS.md, side
# by side in one run, on a throwaway PostgreSQL server of its own.
#
# Three databases of the same server start as identical copies of one
# generated library:
#   A  a_none       no triggers at all
#   B  b_extension  patron_group attached
#   C  c_plpgsql    the same totals kept by PL/pgSQL row-level triggers
#
# Settings (environment):
#   SCALE=1        data size: 100,000 x SCALE patrons, 1,000,000 x SCALE loans and bills
#   T=30           seconds per transaction-mix run (synchronous_commit off)
#   ROUNDS=3       rounds of A B C for the mix, the bulk load and the reads
#   T_SYNC=15      seconds per mix run with synchronous_commit on
#   SYNC_ROUNDS=3  rounds of that (0 to skip)
#   T_READ=10      seconds per Group Member Details run
#   CLIENTS=2      pgbench clients (and threads) for the mix
#   MEM_CALLS=1000000  trigger calls in each memory test
#   PORT=54370  WORK=/tmp/patron_group_bench  BENCH_USER=pgbench_user
#   BUILD=1        build and install the extension from this tree first (0: use the installed one)
#
# Runs as root (the server and every client then run as BENCH_USER, created
# when missing, because initdb refuses root) or as an ordinary user (BUILD=1
# then needs sudo for make install).  Progress goes to stderr; the results,
# in markdown, to stdout and to $WORK/results.md ($WORK also keeps every
# pgbench log, raw.csv and, when gnuplot is installed, ratios.png).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
SCALE=${SCALE:-1}
T=${T:-30}
ROUNDS=${ROUNDS:-3}
T_SYNC=${T_SYNC:-15}
SYNC_ROUNDS=${SYNC_ROUNDS:-3}
T_READ=${T_READ:-10}
CLIENTS=${CLIENTS:-2}
MEM_CALLS=${MEM_CALLS:-1000000}
PORT=${PORT:-54370}
WORK=${WORK:-/tmp/patron_group_bench}
BUILD=${BUILD:-1}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

for v in SCALE T ROUNDS T_SYNC SYNC_ROUNDS T_READ CLIENTS MEM_CALLS PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
[ "$SCALE" -ge 1 ] && [ "$ROUNDS" -ge 1 ] || { echo "run.sh: SCALE and ROUNDS must be at least 1" >&2; exit 2; }

STARTED=$(date +%s)
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# --- user, packages, build -------------------------------------------------

if [ "$(id -u)" = 0 ]; then
    BENCH_USER=${BENCH_USER:-pgbench_user}
    if ! id "$BENCH_USER" >/dev/null 2>&1; then
        say "creating user $BENCH_USER"
        useradd --create-home --shell /bin/bash "$BENCH_USER"
    fi
    as_user() { runuser -u "$BENCH_USER" -- "$@"; }
    SUDO=()
else
    BENCH_USER=$(id -un)
    as_user() { "$@"; }
    SUDO=(sudo)
fi

if [ ! -x "$PGBIN/postgres" ] || [ ! -x "$PGBIN/pgbench" ] || [ ! -x "$PGBIN/pg_config" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL 15 server, client and server-dev packages are needed in $PGBIN"
    say "installing PostgreSQL 15"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postgresql-15 postgresql-client-15 postgresql-server-dev-15 libicu-dev make gcc pkg-config >/dev/null
fi

SOCK=$WORK/socket
PGDATA=$WORK/data
LOGS=$WORK/logs
S=$WORK/sql
if [ -f "$PGDATA/postmaster.pid" ]; then
    as_user "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
fi
rm -rf "$WORK"
mkdir -p "$WORK" "$SOCK" "$LOGS" "$S"
cp "$HERE"/*.sql "$S"/

if [ "$BUILD" = 1 ]; then
    say "building and installing patron_group from $TOP"
    mkdir -p "$WORK/build"
    tar -C "$TOP" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
        --exclude=results --exclude=tmp_check --exclude=output_iso --exclude=log -cf - . \
        | tar -C "$WORK/build" -xf -
    make -C "$WORK/build" -s -j"$(nproc)" with_llvm=no PG_CONFIG="$PGBIN/pg_config" >"$LOGS/build.log" 2>&1 \
        || { cat "$LOGS/build.log" >&2; die "build failed"; }
    "${SUDO[@]}" make -C "$WORK/build" -s install with_llvm=no PG_CONFIG="$PGBIN/pg_config" >>"$LOGS/build.log" 2>&1 \
        || { cat "$LOGS/build.log" >&2; die "make install failed"; }
fi
SO=$("$PGBIN/pg_config" --pkglibdir)/patron_group.so
[ -f "$SO" ] || die "patron_group is not installed ($SO missing); run with BUILD=1"
[ "$(id -u)" = 0 ] && chown -R "$BENCH_USER" "$WORK"

# --- server ----------------------------------------------------------------

mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
sb_mb=$(( mem_kb / 4 / 1024 )); [ "$sb_mb" -gt 2048 ] && sb_mb=2048
say "starting a server on port $PORT (socket in $SOCK)"
as_user "$PGBIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C -A trust --username="$BENCH_USER" >"$LOGS/initdb.log"
cat >>"$PGDATA/postgresql.conf" <<EOF

# patron_group benchmark settings (test/bench/run.sh)
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 20
shared_buffers = ${sb_mb}MB
huge_pages = off
work_mem = 64MB
maintenance_work_mem = 512MB
synchronous_commit = off
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
max_parallel_workers_per_gather = 0
jit = off
log_checkpoints = on
log_min_duration_statement = -1
EOF
as_user "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$LOGS/server.log" start >/dev/null
stop_server() { as_user "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; }
trap stop_server EXIT

export PGHOST=$SOCK PGPORT=$PORT PGUSER=$BENCH_USER
P() { as_user env PGHOST="$SOCK" PGPORT="$PORT" PGUSER="$BENCH_USER" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
Q() { P -At "$@"; }   # one value
PGB() { as_user env PGHOST="$SOCK" PGPORT="$PORT" PGUSER="$BENCH_USER" PGOPTIONS="${PGB_OPTIONS:-}" "$PGBIN/pgbench" -n "$@"; }
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN {printf "%.1f", b - a}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
verdict() { awk "BEGIN {exit !($1)}" && echo "**met**" || echo "**not met**"; }
RAW=$WORK/raw.csv
echo "phase,round,variant,metric,value" >"$RAW"
raw() { echo "$1,$2,$3,$4,$5" >>"$RAW"; }

A=a_none B=b_extension C=c_plpgsql
VARIANTS=($A $B $C)
declare -A LABEL=([$A]="A: no triggers" [$B]="B: patron_group" [$C]="C: PL/pgSQL row triggers")
# round r runs the variants in a rotated order: A B C, B C A, C A B, ...
order() { local r=$1 k; for k in 0 1 2; do echo -n "${VARIANTS[$(( (r - 1 + k) % 3 ))]} "; done; }

# --- the library -----------------------------------------------------------

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "generating the library (scale $SCALE)"
P -d postgres -c "CREATE DATABASE $A"
t0=$(now_s); P -d $A -v scale="$SCALE" -f "$S/schema.sql" >"$LOGS/schema.log"; GEN_S=$(elapsed "$t0")
for db in $B $C; do P -d postgres -c "CREATE DATABASE $db TEMPLATE $A STRATEGY FILE_COPY"; done
say "attaching patron_group (B)"
t0=$(now_s); P -d $B -f "$S/extension.sql" >"$LOGS/extension.log"; ATTACH_S=$(elapsed "$t0")
say "installing the PL/pgSQL peer (C)"
t0=$(now_s); P -d $C -f "$S/peer.sql" >"$LOGS/peer.log"; PEER_S=$(elapsed "$t0")

COUNTS=$(Q -d $A -c "SELECT format('%s patrons (%s in %s families), %s loans (%s out), %s bills, %s payments',
    (SELECT count(*) FROM patron), (SELECT count(*) FROM patron p WHERE EXISTS (SELECT FROM patron m WHERE m.usrgroup = p.usrgroup AND m.id <> p.id)),
    (SELECT count(DISTINCT usrgroup) FROM patron WHERE usrgroup <> id),
    (SELECT count(*) FROM circulation), (SELECT count(*) FROM circulation WHERE checkin_at IS NULL),
    (SELECT count(*) FROM billing), (SELECT count(*) FROM payment))")
B_GROUPS=$(Q -d $B -c "SELECT format('%s groups, %s members', count(*), sum(member_count)) FROM patron_group.groups")
DIGEST_B=$(Q -d $B -v accounts=patron_group.accounts -v groups=patron_group.groups -f "$S/totals_digest.sql" | tr '\n' ' ')
DIGEST_C=$(Q -d $C -v accounts=peer_account -v groups=peer_group -f "$S/totals_digest.sql" | tr '\n' ' ')
[ "$DIGEST_B" = "$DIGEST_C" ] && SAME_START=yes || SAME_START="NO (B: $DIGEST_B; C: $DIGEST_C)"
VERIFY0=$(Q -d $B -c "SELECT count(*) FROM patron_group.verify()")
PEER0=$(Q -d $C -f "$S/peer_check.sql")

# --- 1. transaction mix ----------------------------------------------------

MIX_FILES=(checkout.sql@30 checkin.sql@30 bill.sql@25 payment.sql@15)
MIX_ARGS=(); for f in "${MIX_FILES[@]}"; do MIX_ARGS+=(-f "$S/$f"); done
SCRIPTS=(checkout checkin bill payment)
declare -A TPS LAT VERIFY_MIX

# run_mix PHASE ROUND DB SECONDS: one pgbench run of the mix, after a checkpoint
run_mix() {
    local phase=$1 r=$2 db=$3 secs=$4 log=$LOGS/$1_r$2_$3.log tps s l
    P -d postgres -c CHECKPOINT
    PGB -c "$CLIENTS" -j "$CLIENTS" -T "$secs" --random-seed=$((1000 + r)) -D scale="$SCALE" \
        "${MIX_ARGS[@]}" -d "$db" >"$log" 2>&1 || { cat "$log" >&2; die "pgbench failed ($phase, $db)"; }
    tps=$(awk '/^tps = / {print $3; exit}' "$log")
    TPS[$phase:$db]+="$tps "
    raw "$phase" "$r" "$db" tps "$tps"
    while read -r s l; do
        LAT[$phase:$db:$s]+="$l "
        raw "$phase" "$r" "$db" "latency_ms:$s" "$l"
    done < <(awk '/^SQL script [0-9]+:/ {n = $4; sub(/.*\//, "", n); sub(/\.sql$/, "", n)}
                  /^ - latency average = / {print n, $5}' "$log")
    printf '   round %s %-12s %10.1f tps\n' "$r" "$db" "$tps" >&2
    if [ "$db" = $B ]; then
        local v; v=$(Q -d $B -c "SELECT count(*) FROM patron_group.verify()")
        VERIFY_MIX[$phase]+="$v "
        raw "$phase" "$r" "$db" verify_rows "$v"
    fi
}

say "1. transaction mix, synchronous_commit off: $ROUNDS rounds x 3 variants x ${T}s"
for r in $(seq 1 "$ROUNDS"); do for db in $(order "$r"); do run_mix mix "$r" $db "$T"; done; done
if [ "$SYNC_ROUNDS" -gt 0 ]; then
    say "1b. transaction mix, synchronous_commit on: $SYNC_ROUNDS rounds x 3 variants x ${T_SYNC}s"
    for r in $(seq 1 "$SYNC_ROUNDS"); do
        for db in $(order "$r"); do PGB_OPTIONS="-c synchronous_commit=on" run_mix sync "$r" $db "$T_SYNC"; done
    done
fi

# --- 2. bulk INSERT ... SELECT ------------------------------------------------

BULK_ROWS=$((1000000 * SCALE))
BULK_SQL="INSERT INTO circulation (patron, item, due_at) SELECT 1 + (i * 7919) % $((100000 * SCALE)), i, now() + interval '21 days' FROM generate_series(1::bigint, $BULK_ROWS) i"
declare -A BULK BULK_CHECK
say "2. bulk INSERT ... SELECT of $BULK_ROWS loans: $ROUNDS rounds x 3 variants"
for r in $(seq 1 "$ROUNDS"); do
    for db in $(order "$r"); do
        case $db in
            $B) check="SELECT 'check=' || count(*) FROM patron_group.verify();" ;;
            $C) check="SELECT 'check=' || ($(grep -v '^--' "$S/peer_check.sql" | sed 's/;[[:space:]]*$//'));" ;;
            *) check="SELECT 'check=-';" ;;
        esac
        P -d postgres -c CHECKPOINT
        out=$(P -d $db -At <<EOF
BEGIN;
\timing on
$BULK_SQL;
\timing off
$check
ROLLBACK;
EOF
)
        ms=$(echo "$out" | awk '/^Time: / {print $2; exit}')
        chk=$(echo "$out" | awk -F= '/^check=/ {print $2}')
        BULK[$db]+="$ms "; BULK_CHECK[$db]+="$chk "
        raw bulk "$r" $db ms "$ms"; raw bulk "$r" $db check_rows "$chk"
        printf '   round %s %-12s %10.1f ms\n' "$r" "$db" "$ms" >&2
        P -d $db -c VACUUM
    done
done

# --- 3. Group Member Details ----------------------------------------------

say "3. Group Member Details for the family of 6 (patron 15): $ROUNDS rounds x ${T_READ}s"
MEMBERS_Q=$(grep -v '^--' "$S/members_sql.sql" | sed 's/;[[:space:]]*$//')
MEMBERS_DIFF=$(Q -d $B -c "WITH e AS (SELECT member_id, items_out, items_overdue, items_lost, balance_owed FROM patron_group.group_members(15)),
    s AS (SELECT id, items_out, items_overdue, items_lost, balance_owed FROM ($MEMBERS_Q) q)
    SELECT (SELECT count(*) FROM (TABLE e EXCEPT ALL TABLE s) x) + (SELECT count(*) FROM (TABLE s EXCEPT ALL TABLE e) y)")
MEMBERS_ROWS=$(Q -d $B -c "SELECT count(*) FROM patron_group.group_members(15)")
P -d $B -c "SELECT member_id, display_name, is_lead, items_out, items_overdue, items_lost, balance_owed FROM patron_group.group_members(15)" >"$LOGS/group_members.txt"
declare -A READ
READS=(members_ext members_sql select1)
for r in $(seq 1 "$ROUNDS"); do
    for mode in simple prepared; do
        for q in "${READS[@]}"; do
            log=$LOGS/read_r${r}_${mode}_$q.log
            PGB -c 1 -T "$T_READ" -M $mode -f "$S/$q.sql" -d $B >"$log" 2>&1 || { cat "$log" >&2; die "pgbench failed ($q)"; }
            l=$(awk '/^latency average = / {print $4; exit}' "$log")
            READ[$mode:$q]+="$l "
            raw read "$r" "$mode:$q" latency_ms "$l"
            printf '   round %s %-8s %-12s %8.3f ms\n' "$r" $mode $q "$l" >&2
        done
    done
done

# --- 4. backend memory -------------------------------------------------------

say "4. backend memory over $MEM_CALLS trigger calls, in one transaction and in separate ones"
P -d $B -f "$S/memory.sql"
t0=$(now_s)
P -d $B -c "SELECT bench_insert_loop('one transaction', $MEM_CALLS, $((100000 * SCALE)))"
MEM1_S=$(elapsed "$t0")
t0=$(now_s)
PGB -c 1 -t "$MEM_CALLS" -M prepared -D n=0 -D calls="$MEM_CALLS" -D scale="$SCALE" \
    -f "$S/memory_tx.sql" -d $B >"$LOGS/memory_tx.log" 2>&1 || { cat "$LOGS/memory_tx.log" >&2; die "pgbench failed (memory)"; }
MEM2_S=$(elapsed "$t0")
MEM_ROWS=$(Q -d $B -F '|' -c "SELECT test, calls, contexts_kb, rss_anon_kb, vm_rss_kb FROM bench_memory ORDER BY test, calls")
while IFS='|' read -r a b c d e; do
    raw memory - "$a" "contexts_kb@$b" "$c"; raw memory - "$a" "rss_anon_kb@$b" "$d"; raw memory - "$a" "vm_rss_kb@$b" "$e"
done <<<"$MEM_ROWS"

say "final checks"
VERIFY_END=$(Q -d $B -c "SELECT count(*) FROM patron_group.verify()")
PEER_END=$(Q -d $C -f "$S/peer_check.sql")
PGVER=$(Q -d postgres -c "SELECT version()")
SETTINGS=$(Q -d postgres -F ' = ' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN
    ('shared_buffers','work_mem','maintenance_work_mem','synchronous_commit','fsync','wal_level','full_page_writes','max_wal_size',
     'checkpoint_timeout','max_parallel_workers_per_gather','jit','autovacuum','wal_buffers','max_connections') ORDER BY name")
stop_server; trap - EXIT
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_MIN=$(calc "%.1f" "($(date +%s) - $STARTED) / 60")

# --- report ----------------------------------------------------------------

OUT=$WORK/results.md
{
med() { echo "${1:-}" | median; }
echo "# patron_group benchmark results"
echo
echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), SCALE=$SCALE, $TOTAL_MIN minutes in all."
echo
echo "## Environment"
echo
echo "- $PGVER"
echo "- $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $((mem_kb / 1024 / 1024)) GB RAM; load average before the run $LOAD0, after $LOAD1"
echo "- patron_group.so sha256 $(sha256sum "$SO" | cut -c1-16)"
echo "- a throwaway server (initdb, port $PORT, Unix socket only), run as $BENCH_USER; settings:"
echo
echo '```'
echo "$SETTINGS"
echo '```'
echo
echo "synchronous_commit is off for the benchmark: with on, every single-row"
echo "transaction waits for a WAL flush (about 0.3 ms on this disk, pg_test_fsync),"
echo "which hides much of what the triggers cost in CPU.  Section 1b repeats the"
echo "mix with synchronous_commit on for comparison.  fsync and full_page_writes"
echo "stay on.  Parallel query and JIT are off so that each statement runs in one"
echo "process, as the single-row statements do anyway."
echo
echo "Data: $COUNTS; generated in ${GEN_S} s."
echo "B: attaching and grouping took ${ATTACH_S} s ($B_GROUPS); C: installing the peer and its initial totals took ${PEER_S} s."
echo "B and C start with the same per-patron and per-group totals: $SAME_START. verify() at the start: $VERIFY0 rows; the peer's own check: $PEER0 rows."
echo
echo "## 1. Transaction mix (synchronous_commit off)"
echo
echo "\`pgbench -n -c $CLIENTS -j $CLIENTS -T $T --random-seed=<1000+round> -D scale=$SCALE -f checkout.sql@30 -f checkin.sql@30 -f bill.sql@25 -f payment.sql@15 -d <db>\`,"
echo "a CHECKPOINT before each run; $ROUNDS rounds, the variants in rotated order (A B C, B C A, C A B, ...)."
echo
mix_table() {
    local phase=$1 a b c
    echo "| variant | TPS per round | median TPS | overhead vs A |"
    echo "|---|---|---|---|"
    a=$(med "${TPS[$phase:$A]}")
    for db in "${VARIANTS[@]}"; do
        m=$(med "${TPS[$phase:$db]}")
        if [ "$db" = $A ]; then o="-"; else o=$(calc "%.1f%%" "100 * (1 - $m / $a)"); fi
        echo "| ${LABEL[$db]} | ${TPS[$phase:$db]}| $m | $o |"
    done
    echo
    echo "Median latency per transaction type (ms):"
    echo
    echo "| variant | checkout | checkin | bill | payment |"
    echo "|---|---|---|---|---|"
    for db in "${VARIANTS[@]}"; do
        row="| ${LABEL[$db]} |"
        for s in "${SCRIPTS[@]}"; do row+=" $(med "${LAT[$phase:$db:$s]:-}") |"; done
        echo "$row"
    done
    echo
}
mix_table mix
MA=$(med "${TPS[mix:$A]}"); MB=$(med "${TPS[mix:$B]}"); MC=$(med "${TPS[mix:$C]}")
OB=$(calc "%.4f" "1 - $MB / $MA"); OC=$(calc "%.4f" "1 - $MC / $MA")
echo "- B overhead: $(calc "%.1f%%" "100 * $OB") (target at most 20%): $(verdict "$OB <= 0.20")"
if awk "BEGIN {exit !($OC > 0)}"; then
    RBC=$(calc "%.2f" "$OB / $OC")
    echo "- C overhead: $(calc "%.1f%%" "100 * $OC"); B overhead / C overhead = $RBC (target at most 0.5): $(verdict "$RBC <= 0.5")"
else
    RBC=n/a
    echo "- C overhead: $(calc "%.1f%%" "100 * $OC") (not positive: the ratio B/C is undefined) — target **not assessable**"
fi
echo "- verify() after each B run: ${VERIFY_MIX[mix]}rows"
echo
if [ "$SYNC_ROUNDS" -gt 0 ]; then
    echo "## 1b. Transaction mix with synchronous_commit on"
    echo
    echo "The same, with PGOPTIONS='-c synchronous_commit=on', -T $T_SYNC, $SYNC_ROUNDS rounds."
    echo
    mix_table sync
    SA=$(med "${TPS[sync:$A]}"); SB=$(med "${TPS[sync:$B]}"); SC=$(med "${TPS[sync:$C]}")
    SOB=$(calc "%.4f" "1 - $SB / $SA"); SOC=$(calc "%.4f" "1 - $SC / $SA")
    echo "- B overhead $(calc "%.1f%%" "100 * $SOB"), C overhead $(calc "%.1f%%" "100 * $SOC")"
    echo "- verify() after each B run: ${VERIFY_MIX[sync]}rows"
    echo
fi
echo "## 2. Bulk INSERT ... SELECT of $BULK_ROWS loans"
echo
echo "Each run: \`BEGIN; \\timing on; $BULK_SQL; \\timing off;\` then the variant's check, then ROLLBACK and VACUUM (untimed); a CHECKPOINT first. Every loan inserted is out, so every one counts."
echo
echo "| variant | ms per round | median ms | ratio to A | check inside the transaction |"
echo "|---|---|---|---|---|"
BA=$(med "${BULK[$A]}")
for db in "${VARIANTS[@]}"; do
    m=$(med "${BULK[$db]}")
    case $db in $B) ck="verify(): ${BULK_CHECK[$db]}rows" ;; $C) ck="peer_check.sql: ${BULK_CHECK[$db]}rows" ;; *) ck="-" ;; esac
    echo "| ${LABEL[$db]} | ${BULK[$db]}| $m | $(calc "%.2f" "$m / $BA") | $ck |"
done
RB=$(calc "%.2f" "$(med "${BULK[$B]}") / $BA")
echo
echo "- B / A = $RB (target at most 1.5): $(verdict "$RB <= 1.5")"
echo
echo "## 3. Group Member Details for a family of 6"
echo
echo "\`pgbench -n -c 1 -T $T_READ -M <simple|prepared> -f <query> -d $B\`, $ROUNDS rounds; latency average in ms."
echo "members_ext.sql is \`SELECT * FROM patron_group.group_members(15)\`; members_sql.sql computes the same figures on demand"
echo "from circulation, billing and payment (per member: out, overdue, lost, balance; then the totals); select1.sql (\`SELECT 1\`) is the round-trip floor."
echo "Both return the same $MEMBERS_ROWS rows (6 members and the total); figures that differ between them: $MEMBERS_DIFF."
echo
echo "| query | protocol | ms per round | median ms |"
echo "|---|---|---|---|"
for mode in simple prepared; do
    for q in "${READS[@]}"; do echo "| $q | $mode | ${READ[$mode:$q]}| $(med "${READ[$mode:$q]}") |"; done
done
LE=$(med "${READ[simple:members_ext]}"); LS=$(med "${READ[simple:members_sql]}")
LEP=$(med "${READ[prepared:members_ext]}"); LSP=$(med "${READ[prepared:members_sql]}")
echo
echo "- extension / plain SQL: $(calc "%.2f" "$LE / $LS") (simple protocol), $(calc "%.2f" "$LEP / $LSP") (prepared)"
echo "- group_members() under 1 ms: $LE ms simple $(verdict "$LE < 1"), $LEP ms prepared $(verdict "$LEP < 1")"
echo
echo "## 4. Backend memory over $MEM_CALLS trigger calls"
echo
echo "In $B, one backend each:"
echo "- one transaction: \`SELECT bench_insert_loop('one transaction', $MEM_CALLS, $((100000 * SCALE)))\` (memory.sql), a PL/pgSQL loop of $MEM_CALLS single-row INSERT statements (${MEM1_S} s);"
echo "- separate transactions: \`pgbench -n -c 1 -t $MEM_CALLS -M prepared -D n=0 -D calls=$MEM_CALLS -f memory_tx.sql\`, one INSERT per transaction, one connection (${MEM2_S} s)."
echo
echo "Each INSERT fires the statement-level trigger once. contexts = sum(total_bytes) of pg_backend_memory_contexts; RssAnon = the backend's private memory; VmRSS also counts the shared buffers it has touched."
echo
echo "| test | trigger calls | contexts (kB) | RssAnon (kB) | VmRSS (kB) |"
echo "|---|---|---|---|---|"
while IFS='|' read -r a b c d e; do echo "| $a | $b | $c | $d | $e |"; done <<<"$MEM_ROWS"
echo
MEMV=$(echo "$MEM_ROWS" | awk -F'|' '
    {key = $1; if ($2 == 100000) {c0[key] = $3; r0[key] = $4} last[key] = $2; c1[key] = $3; r1[key] = $4}
    END {grow = 0; for (k in c1) {dc = c1[k] - c0[k]; dr = r1[k] - r0[k];
             printf "%s: from 100,000 to %s calls, contexts %+d kB, RssAnon %+d kB. ", k, last[k], dc, dr;
             if (dc > 1024 || dr > 2048) grow = 1}
         print (grow ? "It grows." : "No growth after warm-up (within 1 MB of contexts, 2 MB of RssAnon).")}')
echo "- $MEMV"
echo
echo "## Final checks"
echo
echo "- verify() in $B after everything (mix, bulk rollbacks, $((2 * MEM_CALLS)) more loans): $VERIFY_END rows"
echo "- the peer's check in $C: $PEER_END rows"
echo
echo "## Targets"
echo
echo "| target | measured | result |"
echo "|---|---|---|"
echo "| mix: B loses at most 20% of A's TPS | $(calc "%.1f%%" "100 * $OB") | $(verdict "$OB <= 0.20") |"
if [ "$RBC" != n/a ]; then
    echo "| mix: B's overhead at most half of C's | $RBC x C's ($(calc "%.1f%%" "100 * $OB") vs $(calc "%.1f%%" "100 * $OC")) | $(verdict "$RBC <= 0.5") |"
else
    echo "| mix: B's overhead at most half of C's | C's overhead $(calc "%.1f%%" "100 * $OC") | not assessable |"
fi
echo "| bulk: B at most 1.5x A | ${RB}x | $(verdict "$RB <= 1.5") |"
echo "| Group Member Details under 1 ms | $LE ms (simple), $LEP ms (prepared) | $(verdict "$LE < 1") simple, $(verdict "$LEP < 1") prepared |"
echo "| backend memory does not grow | see section 4 | $(echo "$MEMV" | grep -q 'It grows' && echo '**not met**' || echo '**met**') |"
echo "| verify() returns no rows after every B run | mix: ${VERIFY_MIX[mix]}; sync: ${VERIFY_MIX[sync]:-}; bulk: ${BULK_CHECK[$B]}; end: $VERIFY_END | $( [ "$(echo ${VERIFY_MIX[mix]} ${VERIFY_MIX[sync]:-} ${BULK_CHECK[$B]} $VERIFY_END | tr ' ' '\n' | grep -cv '^0$')" = 0 ] && echo '**met**' || echo '**not met**') |"
} >"$OUT"

# --- plot --------------------------------------------------------------------

if command -v gnuplot >/dev/null 2>&1; then
    cat >"$WORK/ratios.dat" <<EOF
"mix: TPS vs A" $(calc "%.3f" "$MB / $MA") $(calc "%.3f" "$MC / $MA") 0.80
"bulk: time vs A" $(calc "%.3f" "$(med "${BULK[$B]}") / $BA") $(calc "%.3f" "$(med "${BULK[$C]}") / $BA") 1.50
"members: latency vs plain SQL" $(calc "%.3f" "$LE / $LS") NaN NaN
EOF
    gnuplot <<EOF >/dev/null 2>&1 || true
set terminal pngcairo size 900,500 font ",11"
set output "$WORK/ratios.png"
set title "patron_group benchmarks (SCALE=$SCALE): ratios, medians of $ROUNDS rounds"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key top left
set ylabel "ratio"
plot "$WORK/ratios.dat" using 2:xtic(1) title "B: patron_group" lc rgb "#1f77b4", \
     "" using 3 title "C: PL/pgSQL row triggers" lc rgb "#ff7f0e", \
     "" using 0:4 with points pt 7 ps 1.5 lc rgb "#d62728" title "target for B (mix: at least, bulk: at most)"
EOF
    [ -f "$WORK/ratios.png" ] && echo "Plot: $WORK/ratios.png" >>"$OUT"
fi

cp "$OUT" /tmp/patron_group_bench_results.md 2>/dev/null || true
cat "$OUT"
say "done in $TOTAL_MIN minutes; results in $OUT, logs in $LOGS"
