# patron_group: PGXS build, tests and demo.
#
#   make demo          sample library + the seed's scenario on a throwaway server
#   make test          every test suite on a throwaway server (installs what it needs);
#                      PG_MAJOR=17 for another installed major
#   make bench         the benchmarks of BENCHMARKS.md
#   make soak          the soak test at length (SOAK_SECONDS, default 600)
#   make fuzz          fuzz the barcode normalizer (FUZZ_SECONDS, default 120)
#   make valgrind      the pg_regress suite with every backend under valgrind
#   make deb           postgresql-15-patron-group_<version>_<arch>.deb (Debian's pg_buildext)
#   make installcheck  the usual PGXS target against a running server

EXTENSION = patron_group
MODULE_big = patron_group
# Bottom layer first; src/README.md says what each file does.
OBJS = src/patron_group.o src/history.o src/sqlgen.o src/locks.o src/mapping.o \
       src/ils_rows.o src/deltas.o src/direct.o src/apply.o src/totals.o src/recount.o \
       src/groups.o src/households.o src/accounts.o src/members.o \
       src/identity.o src/consent.o src/policies.o src/guard.o \
       src/triggers.o src/limits.o src/payments.o src/attach.o \
       src/reporting.o src/views.o src/barcode_core.o src/barcode.o src/init.o
# The install scripts: 1.0's as released (where the update paths start), the
# update scripts, and the current version's, built from sql/patron_group.sql
# (the whole definition of the current version) for its default_version.
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")
DATA = sql/$(EXTENSION)--1.0.sql $(wildcard sql/$(EXTENSION)--*--*.sql) \
       sql/$(EXTENSION)--$(EXTVERSION).sql
# (before the include: pgxs.mk reads EXTRA_CLEAN as it is included)
EXTRA_CLEAN = results output_iso tmp_check regression.diffs regression.out log \
              sql/$(EXTENSION)--$(EXTVERSION).sql

REGRESS = setup attach barcode groups clone errors privileges totals totals_koha security \
          reporting hostile limits alter trees states households reporting_plans direct \
          consent_trees
REGRESS_OPTS = --inputdir=test --encoding=UTF8
ISOLATION = move_concurrent lead_access totals_concurrent totals_merge \
            isolation_levels limits_concurrent alter_attachment trees_merge \
            direct_updates households_after_error
ISOLATION_OPTS = --inputdir=test --encoding=UTF8
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS = -Wall -Wextra -Wno-unused-parameter
SHLIB_LINK += $(ICU_LIBS)
# export only what PostgreSQL calls (src/exports.map)
SHLIB_LINK += -Wl,--version-script=$(dir $(firstword $(MAKEFILE_LIST)))src/exports.map

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the C core of the barcode normalizer includes ICU headers only
override CPPFLAGS += $(ICU_CFLAGS)

all: sql/$(EXTENSION)--$(EXTVERSION).sql

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

.PHONY: demo test bench soak fuzz valgrind deb
demo:
	@bash scripts/demo.sh

# PG_MAJOR=NN: against that installed major instead of 15
test:
	@PG_MAJOR='$(PG_MAJOR)' bash scripts/test.sh

# benchmarks (not part of make test); SCALE=10 for ten times the data
bench:
	@bash test/bench/run.sh

# reliability (RELIABILITY.md; not part of make test)
soak:
	@bash scripts/soak.sh

fuzz:
	@bash test/fuzz/run.sh

valgrind:
	@bash scripts/valgrind.sh

# the Debian package (debian/, built in build-deb/; the version is
# patron_group.control's default_version)
deb:
	@bash scripts/deb.sh
