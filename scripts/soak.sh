#!/usr/bin/env bash
# make soak: the soak test (test/t/010_soak.pl) and the crash test
# (test/t/011_crash.pl) at length, on throwaway servers.
#
#   SOAK_SECONDS   the READ COMMITTED phase (default 600); SERIALIZABLE runs a third
#   SOAK_CLIENTS   concurrent clients (default 6)
#   SOAK_PATRONS   patrons in the library (default 200)
#
# Prints, per operation, the transactions, retries, deadlocks and
# serialization failures, then the test results.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export SOAK_SECONDS=${SOAK_SECONDS:-600} SOAK_CLIENTS=${SOAK_CLIENTS:-6} SOAK_PATRONS=${SOAK_PATRONS:-200}
ensure_packages
ensure_user
WORK=$(mktemp -d /tmp/patron_group-soak.XXXXXX)
chmod 755 "$WORK"
build_and_install "$WORK"
say "soak: $SOAK_SECONDS s, $SOAK_CLIENTS clients, $SOAK_PATRONS patrons"
as_user env SOAK_SECONDS="$SOAK_SECONDS" SOAK_CLIENTS="$SOAK_CLIENTS" SOAK_PATRONS="$SOAK_PATRONS" \
    make -C "$BUILD_DIR" -s installcheck with_llvm=no PG_CONFIG=$PGBIN/pg_config \
    REGRESS= ISOLATION= PROVE_TESTS="test/t/010_soak.pl test/t/011_crash.pl"
