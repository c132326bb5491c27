#!/usr/bin/env bash
# Fuzz tier: runs every libFuzzer target (build/fuzz/test/fuzz/fuzz_*, `make fuzzers`) for
# FUZZ_SECONDS each (unset, as in make test: 30 s for the targets in SLOW, whose coverage from
# the seeds still grows after 15 s, and 15 s for the rest, which reach theirs well within 15 s),
# on its committed seed corpus (test/fuzz/corpus/<target>/)
# plus what it finds (build/fuzz/corpus/<target>/). FUZZ_JOBS targets (default 2) run at once.
# Regression inputs (test/fuzz/regressions/<target>/*) are replayed first. A crash is a
# failure; the input is kept in build/fuzz/crashes/<target>/ to be fixed and then committed as
# a regression input. Per target: PASS:/FAIL: lines and "# fuzz NAME: N execs in Ss, cov: C".
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
# Measured from the seeds on a 2-core machine, two at a time: at 15 s of 30 every other target
# had its final coverage; these two still found new edges (client_args 1034 -> 1071, outlog
# 446 -> 575).
SLOW=" client_args outlog "
JOBS=${FUZZ_JOBS:-2}
OUT=$BUILD/fuzz/results
rm -rf "$OUT"
mkdir -p "$OUT"

# One target: its lines go to $OUT/<target>; its status to $OUT/<target>.rc.
run_one() {
    local bin=$1 name target seeds work crashes log rc execs cov failed=0
    name=$(basename "$bin")
    target=${name#fuzz_}
    local secs=${FUZZ_SECONDS:-15}
    [ -z "${FUZZ_SECONDS:-}" ] && [[ $SLOW == *" $target "* ]] && secs=30
    seeds=test/fuzz/corpus/$target
    work=$BUILD/fuzz/corpus/$target
    crashes=$BUILD/fuzz/crashes/$target
    mkdir -p "$work" "$crashes"
    {
        if ls "test/fuzz/regressions/$target"/* >/dev/null 2>&1; then
            if "$bin" -close_fd_mask=3 "${LEAKS[@]}" test/fuzz/regressions/"$target"/* \
                >"$BUILD/fuzz/$target.regress.log" 2>&1; then
                echo "PASS: fuzz $target regressions"
            else
                echo "FAIL: fuzz $target regressions -- see $BUILD/fuzz/$target.regress.log"
                failed=1
            fi
        fi
        [ -d "$seeds" ] || echo "# fuzz $target: no seed corpus in $seeds"
        log=$BUILD/fuzz/$target.log
        # -close_fd_mask=3: the targets' own stdout/stderr (usage messages, JSON) are muted;
        # libFuzzer and the sanitizers keep reporting into the log.
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -close_fd_mask=3 "${LEAKS[@]}" -artifact_prefix="$crashes/" "$work" $([ -d "$seeds" ] && echo "$seeds") \
            >"$log" 2>&1
        rc=$?
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        if [ "$rc" -eq 0 ]; then
            echo "PASS: fuzz $target"
        else
            echo "FAIL: fuzz $target -- exit $rc, inputs in $crashes, log $log"
            grep -E 'ERROR|SUMMARY|==[0-9]+==|deadly signal' "$log" | head -5 | sed 's/^/#   /'
            failed=1
        fi
        echo "# fuzz $target: ${execs:-0} execs in ${secs}s, ${cov:-cov: 0}"
    } >"$OUT/$target" 2>&1
    echo "$failed" >"$OUT/$target.rc"
}

bins=()
for bin in "$BUILD"/fuzz/test/fuzz/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] && bins+=("$bin")
done
# The longer ones start first, so that the shorter ones fill in around them.
is_slow() { local n=${1##*/}; [[ $SLOW == *" ${n#fuzz_} "* ]]; }
order=()
for bin in "${bins[@]}"; do is_slow "$bin" && order+=("$bin"); done
for bin in "${bins[@]}"; do is_slow "$bin" || order+=("$bin"); done
if [ "${#bins[@]}" -eq 0 ]; then
    echo "FAIL: fuzz -- no fuzz targets built (make fuzzers)"
    exit 1
fi

# LeakSanitizer (libFuzzer's leak detection, and each target's exit) stops the world with
# ptrace; where ptrace is refused (Yama ptrace_scope 3, a seccomp filter around the tests) it
# dies in every run, which libFuzzer would report as a crash of every target. Asked once, of
# one run of the first target on an empty corpus: leak detection is then off, on a SKIP line;
# crashes and ASan's and UBSan's checks stay.
LEAKS=()
probe=$(mktemp -d)
if "${bins[0]}" -runs=1 "$probe" 2>&1 | grep -q 'LeakSanitizer has encountered a fatal error'; then
    LEAKS=(-detect_leaks=0)
    export ASAN_OPTIONS="detect_leaks=0 ${ASAN_OPTIONS:-}"
    echo "SKIP: fuzz: leak detection -- LeakSanitizer cannot ptrace here" \
        "(kernel.yama.ptrace_scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo none), or a seccomp filter)"
fi
rm -rf "$probe"

running=0
for bin in "${order[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
    run_one "$bin" &
    running=$((running + 1))
done
wait

# Report in target order, whatever order they finished in.
FAILED=0
for bin in "${bins[@]}"; do
    target=$(basename "$bin")
    target=${target#fuzz_}
    cat "$OUT/$target" 2>/dev/null || echo "FAIL: fuzz $target -- no result"
    [ "$(cat "$OUT/$target.rc" 2>/dev/null)" = 0 ] || FAILED=1
done
exit $FAILED
