#!/usr/bin/env bash
# make valgrind: the whole pg_regress suite against a server running under
# valgrind's memcheck, every backend included, and a report of the errors,
# those whose stack passes through patron_group.so counted apart.
#
# (AddressSanitizer through LD_PRELOAD is the other usual way; with
# Debian's PostgreSQL 15 the preloaded runtime deadlocks in the server's
# start-up, before the extension is ever loaded, so memcheck it is.)
#
# The server is not built for valgrind, so memcheck knows malloc but not the
# server's memory contexts: it checks the ICU buffers the barcode
# normalizer mallocs (overflow, use after free, double free) and every read
# of uninitialised memory.  Leaks are not checked: the server frees in bulk.
#
#   VALGRIND_PORT  the server's port (default 54332)

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${VALGRIND_PORT:-54332}
ensure_packages
command -v valgrind >/dev/null || {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
}
ensure_user
WORK=$(mktemp -d /tmp/patron_group-valgrind.XXXXXX)
chmod 755 "$WORK"
build_and_install "$WORK"

DIR=$WORK/server
mkdir -p "$DIR/socket" "$DIR/valgrind"
[ "$(id -u)" = 0 ] && chown -R "$RUN_USER" "$DIR"
as_user $PGBIN/initdb -D "$DIR/data" --encoding=UTF8 --locale=C -A trust --username="$RUN_USER" >/dev/null
say "starting the server under valgrind on port $PORT"
as_user bash -c "valgrind --quiet --tool=memcheck --trace-children=yes --leak-check=no \
    --track-origins=no --read-var-info=no --num-callers=30 \
    --log-file='$DIR/valgrind/%p.log' \
    $PGBIN/postgres -D '$DIR/data' -p $PORT -k '$DIR/socket' -c listen_addresses='' \
    >'$DIR/server.log' 2>&1 &"
stop() { as_user $PGBIN/pg_ctl -D "$DIR/data" -m fast -t 300 stop >/dev/null 2>&1 || true; }
trap stop EXIT
for _ in $(seq 1 120); do
    as_user $PGBIN/pg_isready -q -h "$DIR/socket" -p $PORT && break
    sleep 1
done

say "pg_regress"
set +e
start=$(date +%s)
as_user env PGHOST="$DIR/socket" PGPORT="$PORT" PGUSER="$RUN_USER" \
    make -C "$BUILD_DIR" installcheck with_llvm=no PG_CONFIG=$PGBIN/pg_config \
    ISOLATION= TAP_TESTS= >"$WORK/regress.log" 2>&1
rc=$?
grep -E '\.\.\. |tests? (passed|failed)' "$WORK/regress.log" | sed 's/^/  /'
[ $rc -ne 0 ] && [ -s "$BUILD_DIR/regression.diffs" ] && head -50 "$BUILD_DIR/regression.diffs"
stop
trap - EXIT

# one error is a block starting "==pid== <message>" up to a blank "==pid==" line
errors=$(cat "$DIR"/valgrind/*.log | grep -cE '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument)')
ours=$(for f in "$DIR"/valgrind/*.log; do
    awk '/^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument)/ {e=1; hit=0; next}
         e && /patron_group\.so/ {hit=1}
         e && /^==[0-9]+== *$/ {if (hit) n++; e=0}
         END {print n+0}' "$f"; done | awk '{s+=$1} END {print s+0}')
backends=$(ls "$DIR"/valgrind/*.log | wc -l)
echo "valgrind: $backends processes checked in $(( $(date +%s) - start )) s; errors: $errors, in patron_group.so: $ours; logs in $DIR/valgrind"
if [ "$ours" -gt 0 ]; then
    grep -l 'patron_group\.so' "$DIR"/valgrind/*.log | head -3 | xargs head -80
fi
[ $rc -eq 0 ] && [ "$ours" -eq 0 ]
