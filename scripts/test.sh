#!/usr/bin/env bash
# make test: install what is needed, build, install, then run pg_regress, the
# isolation tests and the TAP tests, each suite on its own so that every
# failure is reported.  Ends with "N passed, N failed"; exits non-zero on any
# failure.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set +e

passed=0
failed=0
status=0

finish() {
    echo
    echo "$passed passed, $failed failed"
    exit $status
}

set -e
ensure_packages
ensure_user
export STRICT_BUILD=1
WORK=$(mktemp -d /tmp/patron_group-test.XXXXXX)
chmod 755 "$WORK"
if ! build_and_install "$WORK"; then
    failed=$((failed + 1)); status=1
    echo "build failed"
    finish
fi
# The released versions' trees, for the upgrade test to build their
# libraries (as root: the clone may belong to another user than the tests),
# from git or from PATRON_GROUP_RELEASED_TREES/<version>
export PATRON_GROUP_RELEASES=$WORK/releases
mkdir -p "$PATRON_GROUP_RELEASES"
while read -r version commit; do
    case $version in ''|\#*) continue ;; esac
    if [ -n "${PATRON_GROUP_RELEASED_TREES:-}" ] && [ -d "$PATRON_GROUP_RELEASED_TREES/$version" ]; then
        # exported already, where this tree has no clone (scripts/test_major.sh)
        cp -a "$PATRON_GROUP_RELEASED_TREES/$version" "$PATRON_GROUP_RELEASES/$version"
    elif git -C "$TOP" cat-file -e "$commit^{commit}" 2>/dev/null; then
        mkdir -p "$PATRON_GROUP_RELEASES/$version"
        git -C "$TOP" archive "$commit" | tar -x -C "$PATRON_GROUP_RELEASES/$version"
    else
        echo "note: commit $commit of version $version is not in this clone; the upgrade test skips it"
    fi
done < "$TOP/test/released_versions"
[ "$(id -u)" = 0 ] && chown -R "$RUN_USER" "$PATRON_GROUP_RELEASES"
start_server "$WORK/server" "${TEST_PORT:-54329}"
trap 'stop_server "$WORK/server"' EXIT
set +e

PGXS_ARGS=(with_llvm=no PG_CONFIG=$PGBIN/pg_config)

# Count pg_regress / isolation results: "test NAME ... ok|FAILED" up to 15,
# "ok N - NAME" / "not ok N - NAME" (TAP) from 16 on.
count_regress() {
    local log=$1 ok bad
    ok=$(grep -cE '^(test| ) *[^ ]+ +\.\.\. ok|^ok [0-9]+ ' "$log")
    bad=$(grep -cE '^(test| ) *[^ ]+ +\.\.\. FAILED|^not ok [0-9]+ ' "$log")
    passed=$((passed + ok)); failed=$((failed + bad))
}

run_suite() {
    local name=$1; shift
    local log=$WORK/$name.log
    say "$name"
    as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" \
        PATRON_GROUP_RELEASES="$PATRON_GROUP_RELEASES" \
        make -C "$BUILD_DIR" installcheck "${PGXS_ARGS[@]}" "$@" >"$log" 2>&1
    local rc=$?
    grep -E '\.\.\. |tests? (passed|failed)|^(not )?ok [0-9]+ |^t/|^test/t|Result:|Failed|Dubious|not ok' "$log" | sed 's/^/  /'
    if [ $rc -ne 0 ]; then
        status=1
        for f in "$BUILD_DIR"/regression.diffs "$BUILD_DIR"/output_iso/regression.diffs; do
            [ -s "$f" ] && { echo "---- $f"; head -n 200 "$f"; }
        done
        grep -qE '\.\.\. |^(not )?ok [0-9]+ |^test/t' "$log" || { echo "---- $name log"; tail -n 60 "$log"; }
    fi
    return $rc
}

run_suite regress ISOLATION= TAP_TESTS=
rc=$?
count_regress "$WORK/regress.log"
[ $rc -ne 0 ] && ! grep -qE 'FAILED|^not ok [0-9]+ ' "$WORK/regress.log" && failed=$((failed + 1))

run_suite isolation REGRESS= TAP_TESTS=
rc=$?
count_regress "$WORK/isolation.log"
[ $rc -ne 0 ] && ! grep -qE 'FAILED|^not ok [0-9]+ ' "$WORK/isolation.log" && failed=$((failed + 1))

# TAP: one count per test file
run_suite tap REGRESS= ISOLATION=
rc=$?
tap_total=$(ls "$BUILD_DIR"/test/t/*.pl 2>/dev/null | wc -l)
tap_failed=$(grep -cE '^test/t/[^ ]+\.pl +\(Wstat' "$WORK/tap.log")
if [ $rc -ne 0 ] && [ "$tap_failed" -eq 0 ]; then
    tap_failed=$tap_total
fi
passed=$((passed + tap_total - tap_failed)); failed=$((failed + tap_failed))
[ $rc -ne 0 ] && [ -d "$BUILD_DIR/tmp_check/log" ] && \
    for f in "$BUILD_DIR"/tmp_check/log/regress_log_*; do echo "---- $f"; tail -n 40 "$f"; done

[ $failed -ne 0 ] && status=1
finish
