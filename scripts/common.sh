# Shared by scripts/test.sh and scripts/demo.sh: install what is needed,
# build and install the extension, and run a throwaway PostgreSQL server.
# Works as root (CI) and as a user with sudo.

set -euo pipefail

# The PostgreSQL major to build and test against: 15 (Debian bookworm's)
# unless PG_MAJOR says another (make test PG_MAJOR=17).
PG_MAJOR=${PG_MAJOR:-15}
case $PG_MAJOR in
    [0-9][0-9]) ;;
    *) echo "PG_MAJOR must be a major version number such as 17, not '$PG_MAJOR'" >&2; exit 2 ;;
esac
# PGBIN may point at another installation of the same major version
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ "$(id -u)" = 0 ]; then
    SUDO=()
    # initdb refuses to run as root: build and test as this user
    RUN_USER=pgtester
else
    SUDO=(sudo)
    RUN_USER=$(id -un)
fi

say() { printf '\n== %s\n' "$*"; }

# Run a command as the unprivileged user.
as_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

# A JDK for pgJDBC: OpenJDK 17 where the Debian release has it (bookworm),
# the release's default JDK elsewhere (trixie and forky have no 17).
jdk_package() {
    if dpkg-query -W -f='${Status}' openjdk-17-jdk-headless 2>/dev/null | grep -q 'install ok installed' ||
       apt-cache show openjdk-17-jdk-headless >/dev/null 2>&1; then
        echo openjdk-17-jdk-headless
    else
        echo default-jdk-headless
    fi
}

# Debian packages, the development package pinned to the installed server.
ensure_packages() {
    local want=(postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR
                postgresql-server-dev-$PG_MAJOR libicu-dev libipc-run-perl
                libdbd-pg-perl  # TAP: bind parameters, as a catalogue passes tokens
                git             # the upgrade test builds the released versions from history
                make gcc pkg-config
                openssl         # the demo computes a token proof as a catalogue would
                pgbouncer       # test/t/040_pgbouncer.pl and 050_drivers.pl
                # test/t/050_drivers.pl: the drivers a catalogue, a desk and a
                # reporting tool use (node-postgres comes from npm at test time)
                python3-psycopg2 python3-psycopg python3-pyodbc odbc-postgresql unixodbc
                libpostgresql-jdbc-java "$(jdk_package)" nodejs)
    local missing=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    local pkgs=()
    if dpkg-query -W -f='${Status}' postgresql-$PG_MAJOR 2>/dev/null | grep -q 'install ok installed'; then
        # pin: an unpinned server-dev would upgrade the installed server and libpq
        local v
        v=$(dpkg-query -W -f='${Version}' postgresql-$PG_MAJOR)
        for p in "${missing[@]}"; do
            case $p in
                postgresql-server-dev-$PG_MAJOR|postgresql-client-$PG_MAJOR) pkgs+=("$p=$v") ;;
                *) pkgs+=("$p") ;;
            esac
        done
    else
        pkgs=("${missing[@]}")
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# Create the unprivileged user when running as root.
ensure_user() {
    if [ "$(id -u)" = 0 ] && ! id "$RUN_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$RUN_USER"
    fi
}

# Copy the tree to a scratch folder the user owns, build there, install as root.
# Sets BUILD_DIR.
build_and_install() {
    local work=$1
    BUILD_DIR=$work/build
    mkdir -p "$BUILD_DIR"
    tar -C "$TOP" --exclude=.git --exclude=results --exclude=output_iso \
        --exclude=tmp_check --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$BUILD_DIR" -xf -
    [ "$(id -u)" = 0 ] && chown -R "$RUN_USER" "$work"
    # The test build (STRICT_BUILD=1) is stricter than the shipped
    # Makefile: warnings are errors and the extension's own Assert()s are
    # checked.  Benchmarks build as shipped.
    local strict=()
    [ "${STRICT_BUILD:-0}" = 1 ] && strict=(COPT="-Werror -DUSE_ASSERT_CHECKING")
    say "building${strict:+ (-Werror -DUSE_ASSERT_CHECKING)}"
    if ! as_user make -C "$BUILD_DIR" -s with_llvm=no PG_CONFIG=$PGBIN/pg_config "${strict[@]}" \
            >"$work/build.log" 2>&1; then
        cat "$work/build.log"
        return 1
    fi
    say "installing"
    "${SUDO[@]}" make -C "$BUILD_DIR" -s install with_llvm=no PG_CONFIG=$PGBIN/pg_config "${strict[@]}" >/dev/null
}

# Start a server with a private socket directory on a non-default port.
# Sets PGHOST, PGPORT, PGDATA_DIR.
start_server() {
    local dir=$1 port=$2
    PGDATA_DIR=$dir/data
    mkdir -p "$dir/socket"
    [ "$(id -u)" = 0 ] && chown -R "$RUN_USER" "$dir"
    as_user $PGBIN/initdb -D "$PGDATA_DIR" --encoding=UTF8 --locale=C -A trust \
        --username="$RUN_USER" >/dev/null
    as_user $PGBIN/pg_ctl -D "$PGDATA_DIR" -w -l "$dir/server.log" \
        -o "-p $port -k $dir/socket -c listen_addresses=''" start >/dev/null
    export PGHOST=$dir/socket PGPORT=$port PGUSER=$RUN_USER
}

stop_server() {
    as_user $PGBIN/pg_ctl -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}
