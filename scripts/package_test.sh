#!/usr/bin/env bash
# The Debian package, as a DBA would use it: build it with make deb, check it
# with lintian, install it into the system with apt-get, start a throwaway
# server as the unprivileged user, CREATE EXTENSION, run the package's
# pg_regress test (test/sql/package.sql) with the pg_regress of
# postgresql-client-15 against the installed files, then remove the package
# and check that its files are gone.  Ends with "N passed, N failed"; exits
# non-zero on any failure.
#
# It changes the system: the package's files replace any patron_group files
# that "make install" put in the system's PostgreSQL directories, and
# removing the package deletes them.  Run "make install with_llvm=no" again
# afterwards to use a build from source in the system installation.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set +e

# the package installs into the system's PostgreSQL, so test with that one
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PKG=postgresql-$PG_MAJOR-patron-group
PG_REGRESS=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test/regress/pg_regress

passed=0
failed=0
installed_here=0
WORK=

check() {
    local name=$1; shift
    if "$@"; then
        echo "ok: $name"; passed=$((passed + 1)); return 0
    else
        echo "FAILED: $name"; failed=$((failed + 1)); return 1
    fi
}

cleanup() {
    [ -n "$WORK" ] && [ -d "$WORK/server/data" ] && stop_server "$WORK/server"
    # never leave the package installed when a step in between failed
    if [ $installed_here = 1 ] && dpkg-query -W -f='${Status}' $PKG 2>/dev/null | grep -q 'install ok installed'; then
        echo "removing $PKG"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 remove -y -qq $PKG >/dev/null 2>&1
    fi
}

finish() {
    trap - EXIT
    cleanup
    # keep the logs only when something failed
    [ $failed -eq 0 ] && [ -n "$WORK" ] && rm -rf "$WORK"
    [ $failed -ne 0 ] && [ -n "$WORK" ] && echo "logs: $WORK"
    echo
    echo "$passed passed, $failed failed"
    [ $failed -eq 0 ] && [ $passed -gt 0 ]
    exit $?
}
trap finish EXIT

set -e
ensure_packages
ensure_user
if ! command -v lintian >/dev/null; then
    say "installing lintian"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends lintian >/dev/null
fi
set +e

cd "$TOP"
VERSION=$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" patron_group.control)
ARCH=$(dpkg --print-architecture)
DEB=${PKG}_${VERSION}_${ARCH}.deb
WORK=$(mktemp -d /tmp/patron_group-package.XXXXXX)
chmod 755 "$WORK"

# --- build -------------------------------------------------------------------
say "make deb"
rm -f "$TOP/$DEB"
LINTIAN=0 make -s deb >"$WORK/deb.log" 2>&1
rc=$?
grep -E '^(== |built |  (Package|Version|Architecture|Depends):)' "$WORK/deb.log"
[ $rc -ne 0 ] && tail -n 40 "$WORK/deb.log"
if ! check "make deb builds $DEB" test $rc -eq 0 -a -f "$TOP/$DEB"; then
    exit 1
fi

say "lintian"
bash "$TOP/scripts/lintian.sh" "$TOP/build-deb/patron-group_${VERSION}_${ARCH}.changes" \
    >"$WORK/lintian.log" 2>&1
rc=$?
sed 's/^/  /' "$WORK/lintian.log"
check "lintian finds no error or warning in the source and binary packages" test $rc -eq 0

# --- install -------------------------------------------------------------------
say "apt-get install ./$DEB"
if dpkg-query -W -f='${Status}' $PKG 2>/dev/null | grep -q 'install ok installed'; then
    echo "$PKG is already installed: the package built now replaces it"
fi
installed_here=1
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "./$DEB" >"$WORK/install.log" 2>&1
rc=$?
[ $rc -ne 0 ] && tail -n 20 "$WORK/install.log"
if ! check "apt-get install ./$DEB" test $rc -eq 0; then
    exit 1
fi
dpkg-query -L $PKG | while read -r f; do [ -f "$f" ] && echo "$f"; done | sort >"$WORK/files"
sed 's/^/  /' "$WORK/files"
files_in_place() {
    grep -qx "$($PGBIN/pg_config --pkglibdir)/patron_group.so" "$WORK/files" &&
        grep -qx "$($PGBIN/pg_config --sharedir)/extension/patron_group.control" "$WORK/files" &&
        grep -qx "$($PGBIN/pg_config --sharedir)/extension/patron_group--.*\.sql" "$WORK/files" &&
        test "$(dpkg-query -W -f='${Version}' $PKG)" = "$VERSION"
}
check "$PKG $VERSION installed its files where this server looks for them" files_in_place

# --- use ---------------------------------------------------------------------------
say "CREATE EXTENSION on a throwaway server"
start_server "$WORK/server" "${PACKAGE_PORT:-54328}"
as_user $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE package_check' \
    >"$WORK/psql.log" 2>&1
got=$(as_user $PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -d package_check \
    -c 'CREATE EXTENSION patron_group' \
    -c "SELECT extversion FROM pg_extension WHERE extname = 'patron_group'" 2>>"$WORK/psql.log")
echo "  extversion: $got"
check "CREATE EXTENSION patron_group installs version $VERSION from the package" test "$got" = "$VERSION" \
    || cat "$WORK/psql.log"

say "pg_regress (postgresql-client-$PG_MAJOR) against the installed package"
# the test and its expected output, where the unprivileged user can read them
mkdir -p "$WORK/regress/sql" "$WORK/regress/expected"
cp "$TOP/test/sql/package.sql" "$WORK/regress/sql/"
cp "$TOP/test/expected/package.out" "$WORK/regress/expected/"
[ "$(id -u)" = 0 ] && chown -R "$RUN_USER" "$WORK/regress"
as_user "$PG_REGRESS" --bindir="$PGBIN" --inputdir="$WORK/regress" --outputdir="$WORK/regress" \
    --encoding=UTF8 --dbname=package_regression package >"$WORK/regress.log" 2>&1
rc=$?
grep -E '\.\.\. |tests? (passed|failed)' "$WORK/regress.log" | sed 's/^/  /'
[ $rc -ne 0 ] && { cat "$WORK/regress.log"; [ -f "$WORK/regress/regression.diffs" ] && head -n 100 "$WORK/regress/regression.diffs"; }
check "pg_regress package" test $rc -eq 0
stop_server "$WORK/server"

# --- remove ------------------------------------------------------------------------
say "apt-get remove $PKG"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 remove -y -qq $PKG >"$WORK/remove.log" 2>&1
rc=$?
[ $rc -ne 0 ] && tail -n 20 "$WORK/remove.log"
not_installed() {
    ! dpkg-query -W -f='${Status}' $PKG 2>/dev/null | grep -q 'install ok installed'
}
check "apt-get remove $PKG" test $rc -eq 0
check "dpkg no longer lists $PKG as installed" not_installed
left=$(while read -r f; do [ -e "$f" ] && echo "$f"; done <"$WORK/files")
[ -n "$left" ] && echo "$left" | sed 's/^/  still there: /'
check "the package's $(wc -l <"$WORK/files") files are gone" test -s "$WORK/files" -a -z "$left"
installed_here=0
echo "(the system's PostgreSQL has no patron_group now: run make install with_llvm=no to put a build from source back)"
