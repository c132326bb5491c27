#!/usr/bin/env bash
# Fuzz tier: runs every libFuzzer target (build/fuzz/test/fuzz/fuzz_*, `make fuzzers`) for
# FUZZ_SECONDS (default 30) each, on its committed seed corpus plus what it finds. Regression
# inputs (test/fuzz/regressions/<target>/*) are replayed first. A crash is a failure; the input
# is kept in build/fuzz/crashes/ to be fixed and then committed as a regression input.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SECS=${FUZZ_SECONDS:-30}
FAILED=0
for bin in "$BUILD"/fuzz/test/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    target=${name#fuzz_}
    seeds=test/fuzz/corpus/$target
    work=$BUILD/fuzz/corpus/$target
    crashes=$BUILD/fuzz/crashes/$target
    mkdir -p "$work" "$crashes"
    if [ -d "test/fuzz/regressions/$target" ] &&
        ls "test/fuzz/regressions/$target"/* >/dev/null 2>&1; then
        if "$bin" test/fuzz/regressions/"$target"/* >"$BUILD/fuzz/$target.regress.log" 2>&1; then
            echo "PASS: fuzz $target regressions"
        else
            echo "FAIL: fuzz $target regressions -- see $BUILD/fuzz/$target.regress.log"
            FAILED=1
        fi
    fi
    log=$BUILD/fuzz/$target.log
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$work" "$seeds" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "PASS: fuzz $target"
    else
        echo "FAIL: fuzz $target -- exit $rc, inputs in $crashes, log $log"
        grep -E 'ERROR|SUMMARY|==[0-9]+==' "$log" | head -5 | sed 's/^/#   /'
        FAILED=1
    fi
    echo "# fuzz $target: ${execs:-0} execs in ${SECS}s, $cov"
done
ls "$BUILD"/fuzz/test/fuzz/fuzz_* >/dev/null 2>&1 || { echo "FAIL: fuzz -- no fuzz targets built (make fuzzers)"; exit 1; }
exit $FAILED
