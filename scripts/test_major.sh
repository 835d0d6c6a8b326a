#!/usr/bin/env bash
# scripts/test_major.sh MAJOR: make test against PostgreSQL MAJOR (17 or 18),
# which the host's Debian does not ship, in a Debian chroot made or reused
# by scripts/chroot.sh.
#
# The tree as it is (without .git, results or objects) is copied into the
# chroot, with the released versions' trees exported from git here for the
# upgrade test (the chroot has no clone); /proc and /dev/pts are mounted
# for the run and unmounted at its end, however it ends; `make test
# PG_MAJOR=MAJOR` runs inside as root (it tests as the user pgtester).  Its
# output is relayed and its exit status is this script's.  Needs root.
#
# Environment:
#   PATRON_GROUP_CHROOTS  the folder of the chroots, one per Debian suite
#                         (default /var/tmp/patron_group-chroots)
#   DEBIAN_MIRROR         passed to scripts/chroot.sh

set -euo pipefail

die() { printf 'test_major.sh: error: %s\n' "$*" >&2; exit 2; }
say() { printf 'test_major.sh: %s\n' "$*" >&2; }

[ $# -eq 1 ] || die "usage: $0 17|18"
MAJOR=$1
case $MAJOR in
    17) SUITE=trixie ;;
    18) SUITE=forky ;;
    *) die "no chroot known for PostgreSQL '$MAJOR' (17 or 18)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (chroot, mount)"
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROOTS=${PATRON_GROUP_CHROOTS:-/var/tmp/patron_group-chroots}
CHROOTS=${CHROOTS%/}

ROOT=$(PATRON_GROUP_CHROOT=$CHROOTS/$SUITE bash "$TOP/scripts/chroot.sh" "$MAJOR") ||
    die "no chroot for PostgreSQL $MAJOR"

# --- the tree, in a folder of its own in the chroot ---------------------------

SRC=/tmp/patron_group-src.$$    # as the chroot sees it
rm -rf --one-file-system "$ROOT$SRC"
mkdir -p "$ROOT$SRC/tree" "$ROOT$SRC/releases"
tar -C "$TOP" --exclude=.git --exclude=results --exclude=output_iso \
    --exclude=tmp_check --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . |
    tar -C "$ROOT$SRC/tree" -xf -
# the released versions, as scripts/test.sh would export them from git
while read -r version commit; do
    case $version in ''|\#*) continue ;; esac
    if git -C "$TOP" cat-file -e "$commit^{commit}" 2>/dev/null; then
        mkdir -p "$ROOT$SRC/releases/$version"
        git -C "$TOP" archive "$commit" | tar -x -C "$ROOT$SRC/releases/$version"
    else
        say "note: commit $commit of version $version is not in this clone"
    fi
done <"$TOP/test/released_versions"

# --- mounts, undone however the run ends --------------------------------------

MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" ||
            say "warning: could not unmount ${MOUNTED[i]}"
    done
    rm -rf --one-file-system "${ROOT:?}$SRC"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bind_mount() {
    local dst=$ROOT$1
    mkdir -p "$dst"
    mountpoint -q "$dst" && die "$dst is mounted already (another run in this chroot?)"
    mount --bind "$1" "$dst"
    MOUNTED+=("$dst")
}
bind_mount /proc
bind_mount /dev/pts

# --- make test inside ---------------------------------------------------------

say "make test PG_MAJOR=$MAJOR in $ROOT"
set +e
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    HOME=/root DEBIAN_FRONTEND=noninteractive \
    PATRON_GROUP_RELEASED_TREES="$SRC/releases" TEST_PORT="${TEST_PORT:-54329}" \
    make -C "$SRC/tree" test PG_MAJOR="$MAJOR"
rc=$?
set -e
exit $rc
