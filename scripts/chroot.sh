#!/usr/bin/env bash
# scripts/chroot.sh MAJOR: a Debian chroot with PostgreSQL MAJOR, to build
# and test the extension against a major that the host's Debian does not
# ship.
#
#   bash scripts/chroot.sh 17    Debian trixie, PostgreSQL 17
#   bash scripts/chroot.sh 18    Debian forky, PostgreSQL 18
#
# The chroot is PATRON_GROUP_CHROOT (default
# /var/tmp/patron_group-chroots/<suite>).  Each step is done only if it is
# missing, so a complete chroot is reused as it is and an interrupted one is
# finished.  When done, the chroot's path is printed on stdout (messages go
# to stderr) and nothing is left mounted in it.  Needs root.
#
# In the chroot: the server, its development files and client, what the
# build and the TAP tests need, no cluster (createcluster.d), no service
# started (policy-rc.d), and the user pgtester (initdb and the TAP tests
# refuse to run as root).
#
# Environment:
#   PATRON_GROUP_CHROOT   the chroot's directory
#   DEBIAN_MIRROR         the Debian mirror (default: the host's, from
#                         /etc/apt/sources.list.d/*.sources or sources.list)

set -euo pipefail

die() { printf 'chroot.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'chroot.sh: %s\n' "$*" >&2; }

[ $# -eq 1 ] || die "usage: $0 17|18"
MAJOR=$1
case $MAJOR in
    17) SUITE=trixie ;;
    18) SUITE=forky ;;
    *) die "no Debian suite known for PostgreSQL '$MAJOR' (17: trixie, 18: forky)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mount, chroot)"

ROOT=${PATRON_GROUP_CHROOT:-/var/tmp/patron_group-chroots/$SUITE}
case $ROOT in
    /*) ;;
    *) die "PATRON_GROUP_CHROOT must be an absolute path, not '$ROOT'" ;;
esac
[ "$ROOT" != / ] || die "PATRON_GROUP_CHROOT must not be /"
ROOT=${ROOT%/}

PACKAGES=("postgresql-$MAJOR" "postgresql-server-dev-$MAJOR" "postgresql-client-$MAJOR"
          libicu-dev make gcc pkg-config
          libipc-run-perl   # TAP tests
          libdbd-pg-perl    # TAP tests: bind parameters
          git ca-certificates
          openssl           # the demo's token proof
          pgbouncer)        # test/t/040_pgbouncer.pl
TEST_USER=pgtester

# The host's Debian mirror: the first URI of a source for the main archive
# (not debian-security), in deb822 or one-line form.
host_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
              grep -E '/debian/?$' | head -n 1 || true)
        [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f" |
              grep -E '/debian/?$' | head -n 1 || true)
        [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
    done
    return 1
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror || true)}
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt: set DEBIAN_MIRROR"

# --- mounts: made for apt, undone on any exit -------------------------------

MOUNTED=()
unmount_all() {
    local i rc=0
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        if ! umount "${MOUNTED[i]}"; then
            say "warning: could not unmount ${MOUNTED[i]}; detaching it lazily"
            umount -l "${MOUNTED[i]}" || rc=1
        fi
    done
    MOUNTED=()
    return $rc
}
trap 'unmount_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bind_mount() {
    local src=$1 dst=$ROOT$1
    mkdir -p "$dst"
    if mountpoint -q "$dst"; then
        die "$dst is mounted already (another run on this chroot?)"
    fi
    mount --bind "$src" "$dst"
    MOUNTED+=("$dst")
}

# Anything mounted under the chroot (never delete a tree with a mount in it).
mounts_under() {
    awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts
}

in_chroot() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
                  DEBIAN_FRONTEND=noninteractive "$@"; }

timed() {
    local what=$1 start end
    shift
    say "$what ..."
    start=$(date +%s)
    "$@" || return
    end=$(date +%s)
    say "$what: done in $((end - start)) s"
}

# --- debootstrap ------------------------------------------------------------

ensure_debootstrap_tool() {
    command -v debootstrap >/dev/null && return 0
    timed "installing debootstrap on the host" \
        sh -c 'DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
               DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null'
}

# A debootstrap that finished leaves apt-get and no debootstrap/ work folder.
bootstrapped() { [ -x "$ROOT/usr/bin/apt-get" ] && [ ! -e "$ROOT/debootstrap" ]; }

ensure_bootstrapped() {
    bootstrapped && { say "$ROOT: base system present"; return 0; }
    if [ -e "$ROOT" ]; then
        [ -z "$(mounts_under "$ROOT")" ] ||
            die "$ROOT is an unfinished bootstrap with something mounted in it: $(mounts_under "$ROOT" | tr '\n' ' ')"
        say "$ROOT: unfinished bootstrap, starting it again"
        rm -rf --one-file-system "$ROOT"
    fi
    ensure_debootstrap_tool
    # debootstrap knows a suite by a script of its name; an older debootstrap
    # (Debian 12's) has none for forky yet, whose layout is sid's
    local script=/usr/share/debootstrap/scripts/$SUITE
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    [ -e "$script" ] || die "debootstrap has no script for $SUITE nor sid"
    mkdir -p "$(dirname "$ROOT")"
    timed "debootstrap --variant=minbase $SUITE $ROOT $MIRROR" \
        debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" "$script" >&2 ||
        die "debootstrap failed (its log: $ROOT/debootstrap/debootstrap.log)"
    bootstrapped || die "debootstrap ended but $ROOT is not complete"
}

# --- configuration before PostgreSQL is installed ----------------------------

configure_chroot() {
    # no service started by a package's maintainer scripts
    if [ ! -x "$ROOT/usr/sbin/policy-rc.d" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
        chmod +x "$ROOT/usr/sbin/policy-rc.d"
    fi
    # no "main" cluster made when the server package is installed
    mkdir -p "$ROOT/etc/postgresql-common/createcluster.d"
    echo 'create_main_cluster = false' >"$ROOT/etc/postgresql-common/createcluster.d/00-no-main.conf"
    # the host's name resolution, for apt (never through a link, which
    # would point into the host)
    if [ -r /etc/resolv.conf ] && [ ! -L "$ROOT/etc/resolv.conf" ]; then
        cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    fi
    # testing's Release file is valid for a week only: a mirror that is a
    # snapshot serves an expired one, which apt refuses without this
    if [ "$SUITE" = forky ]; then
        echo 'Acquire::Check-Valid-Until "false";' \
            >"$ROOT/etc/apt/apt.conf.d/99patron-group-no-valid-until"
    fi
}

# --- packages ---------------------------------------------------------------

missing_packages() {
    local p status
    for p in "${PACKAGES[@]}"; do
        # shellcheck disable=SC2016 # ${Status} is dpkg-query's, not the shell's
        status=$(in_chroot dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [ "$status" = 'install ok installed' ] || echo "$p"
    done
}

ensure_packages() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    missing=${missing% }
    if [ -z "${missing// /}" ]; then
        say "packages present: ${PACKAGES[*]}"
        return 0
    fi
    bind_mount /proc
    bind_mount /dev/pts
    # finish what an interrupted run left unconfigured (nothing otherwise)
    in_chroot dpkg --configure -a >&2 || die "dpkg --configure -a failed in $ROOT"
    timed "apt-get update in $SUITE" in_chroot apt-get update -qq >&2 ||
        die "apt-get update failed in $ROOT"
    # shellcheck disable=SC2086 # $missing is a list of package names
    timed "installing $missing" \
        in_chroot apt-get install -y -qq --no-install-recommends $missing >&2 ||
        die "apt-get install failed in $ROOT"
    in_chroot apt-get clean
    unmount_all
    missing=$(missing_packages | tr '\n' ' ')
    [ -z "${missing// /}" ] || die "still missing after apt-get install: $missing"
    [ -x "$ROOT/usr/lib/postgresql/$MAJOR/bin/pg_config" ] ||
        die "no /usr/lib/postgresql/$MAJOR/bin/pg_config in $ROOT"
}

ensure_user() {
    in_chroot id "$TEST_USER" >/dev/null 2>&1 && return 0
    in_chroot useradd --create-home --shell /bin/bash "$TEST_USER"
    say "user $TEST_USER created"
}

ensure_bootstrapped
configure_chroot
ensure_packages
ensure_user
say "ready: $(in_chroot /usr/lib/postgresql/"$MAJOR"/bin/pg_config --version) in $ROOT"
echo "$ROOT"
