#!/usr/bin/env bash
# make fuzz: build the libFuzzer target of the barcode normalizer's ICU core
# (src/barcode_core.c, no PostgreSQL) with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run it for a fixed time.
#
#   FUZZ_SECONDS   time budget (default 120)
#   FUZZ_DIR       work folder: corpus, findings, log (default /tmp/patron_group-fuzz)
#
# Prints the executions, the corpus size and the findings; exits non-zero
# when the fuzzer found a crash, a leak or a violated property.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_BUDGET=${FUZZ_SECONDS:-120}
WORK=${FUZZ_DIR:-/tmp/patron_group-fuzz}

# clang with libFuzzer (libclang-rt-dev) and the ICU headers, from Debian
need=(clang libclang-rt-dev libicu-dev pkg-config)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
    echo "== installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$WORK/corpus" "$WORK/findings"
cp -n "$TOP"/test/fuzz/corpus/* "$WORK/corpus/" 2>/dev/null || true

echo "== building"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    $(pkg-config --cflags icu-uc) -I"$TOP/src" \
    "$TOP/src/barcode_core.c" "$TOP/test/fuzz/barcode_fuzz.c" \
    $(pkg-config --libs icu-uc) -o "$WORK/barcode_fuzz"

echo "== fuzzing for ${SECONDS_BUDGET}s (corpus in $WORK/corpus, findings in $WORK/findings)"
set +e
"$WORK/barcode_fuzz" -max_total_time="$SECONDS_BUDGET" -max_len=512 \
    -dict="$TOP/test/fuzz/barcode.dict" -print_final_stats=1 \
    -artifact_prefix="$WORK/findings/" "$WORK/corpus" >"$WORK/fuzz.log" 2>&1
rc=$?
set -e

runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$WORK/fuzz.log" | grep -oE '[0-9]+$' || echo 0)
speed=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$WORK/fuzz.log" | grep -oE '[0-9]+$' || echo 0)
corpus=$(ls "$WORK/corpus" | wc -l)
findings=$(ls "$WORK/findings" | wc -l)
echo "executions: $runs ($speed per second), corpus: $corpus inputs, findings: $findings"
if [ $rc -ne 0 ] || [ "$findings" -ne 0 ]; then
    grep -E 'ERROR|barcode_fuzz:|SUMMARY|Test unit written' "$WORK/fuzz.log" | head -20
    ls "$WORK/findings"
    exit 1
fi
