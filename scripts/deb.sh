#!/usr/bin/env bash
# make deb: build postgresql-15-patron-group_<version>_<arch>.deb with
# Debian's tooling for PostgreSQL extensions (pg_buildext, dh --with
# pgxs_loop, debian/).  The package's version is default_version of
# patron_group.control, read now: when debian/changelog's newest entry names
# another version, the copy that is built gets the control file's version
# (the tree's own debian/changelog is not changed).  Installs the build
# dependencies it lacks (as root, or with sudo), builds in build-deb/ and
# leaves the .deb in the top folder.  Prints lintian's findings when lintian
# is installed (LINTIAN=0 skips it).

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
say() { printf '\n== %s\n' "$*"; }
die() { echo "make deb: $*" >&2; exit 1; }

VERSION=$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" patron_group.control)
[ -n "$VERSION" ] || die "no default_version in patron_group.control"
ARCH=$(dpkg --print-architecture)
PKG=postgresql-15-patron-group
DEB=${PKG}_${VERSION}_${ARCH}.deb

# --- build dependencies: pinned to what is installed -------------------------
# postgresql-server-dev-15 must match the server (an unpinned one upgrades
# the server and libpq) and postgresql-server-dev-all requires the installed
# postgresql-common's exact version.
pinned() {
    local p=$1 of=$2 v
    v=$(dpkg-query -W -f='${Version}' "$of" 2>/dev/null || true)
    if dpkg-query -W -f='${Status}' "$of" 2>/dev/null | grep -q 'install ok installed'; then
        echo "$p=$v"
    else
        echo "$p"
    fi
}
missing=()
for p in debhelper dpkg-dev libicu-dev make gcc postgresql-server-dev-15 postgresql-server-dev-all; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for p in "${missing[@]}"; do
        case $p in
            postgresql-server-dev-15) pkgs+=("$(pinned "$p" postgresql-15)") ;;
            postgresql-server-dev-all) pkgs+=("$(pinned "$p" postgresql-common)") ;;
            *) pkgs+=("$p") ;;
        esac
    done
    say "installing build dependencies: ${pkgs[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# --- a copy of the tree to build from ----------------------------------------
# the tracked files and new ones not ignored (a fresh clone: the tracked files)
OUT=$TOP/build-deb
SRC=$OUT/patron-group-$VERSION
rm -rf "$OUT"
mkdir -p "$SRC"
if git -C "$TOP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$TOP" ls-files -z --cached --others --exclude-standard \
        | (cd "$TOP" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
        | tar -C "$TOP" --null -T - -cf - | tar -C "$SRC" -xf -
else
    tar -C "$TOP" --exclude=./build-deb --exclude=.git --exclude='*.deb' --exclude=results \
        --exclude=output_iso --exclude=tmp_check --exclude='*.o' --exclude='*.so' \
        --exclude='*.bc' -cf - . | tar -C "$SRC" -xf -
fi
[ -f "$SRC/debian/rules" ] || die "debian/rules is missing"

cd "$SRC"
CHANGELOG_VERSION=$(dpkg-parsechangelog -S Version)
if [ "$CHANGELOG_VERSION" != "$VERSION" ]; then
    say "debian/changelog's newest entry is $CHANGELOG_VERSION, patron_group.control says $VERSION: building $VERSION"
    sed -i "1s/^patron-group ([^)]*)/patron-group ($VERSION)/" debian/changelog
    [ "$(dpkg-parsechangelog -S Version)" = "$VERSION" ] || die "could not set the version in debian/changelog"
fi

say "building $DEB"
# -us -uc: nothing is signed; the source package (3.0 native) is built too,
# so that lintian checks both
if ! dpkg-buildpackage -us -uc >"$OUT/build.log" 2>&1; then
    tail -n 60 "$OUT/build.log"
    die "dpkg-buildpackage failed (whole log: $OUT/build.log)"
fi
[ -f "$OUT/$DEB" ] || { ls -l "$OUT"; die "$DEB was not built"; }
cp "$OUT/$DEB" "$TOP/$DEB"
echo "built $DEB"
dpkg-deb --info "$TOP/$DEB" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  \1:/p'
dpkg-deb --contents "$TOP/$DEB" | awk '{print "  " $6}' | grep -v '/$'

if [ "${LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
    say "lintian"
    if bash "$TOP/scripts/lintian.sh" "$OUT/patron-group_${VERSION}_${ARCH}.changes"; then
        echo "lintian: no errors or warnings"
    else
        echo "lintian: errors or warnings above ($DEB was built)"
        exit 2
    fi
fi
