#!/usr/bin/env bash
# The test runner behind `make test`: runs each tier, prints a summary line per tier and ends
# with one line "N passed, N failed, N skipped". Exit status is non-zero on any failure.
#
#   test/run.sh                 every tier
#   test/run.sh unit host       the named tiers
# Tiers: unit (Criterion, no root), host (root: real namespaces, cgroups, mTLS on loopback),
#        asan, tsan (unit + host under sanitizers), and whatever else is present:
#        vm (test/vm/run.sh), tls (test/tls/run.sh), interop (test/interop/run.sh),
#        fuzz (test/fuzz/run.sh), valgrind (test/valgrind/run.sh: memcheck on a server session).
# Environment: RUNJOB_BIN (default bin/runjob), BUILD (default build), VERBOSE=1.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
SUMMARY=()
SAN_PREFIX=() # a command the sanitizer tiers run each test under (san_usable)
SAN_LEAKS=    # detect_leaks=0 where LeakSanitizer cannot run (san_usable)
TIMES=()      # "SECONDS LABEL" of every test binary and script run (note_time)
SLOW_SECS=20  # a test that takes longer gets a "# time" line as it ends

# note_time LABEL START: records how long LABEL took since START ($EPOCHREALTIME); a slow one
# is said at once, and the slowest ten of the run are listed at its end.
note_time() {
    local label=$1 start=$2 ms
    ms=$(( (${EPOCHREALTIME/./} - ${start/./}) / 1000 ))
    TIMES+=("$((ms / 1000)).$(printf '%03d' $((ms % 1000)) | cut -c1) $label")
    [ "$ms" -ge $((SLOW_SECS * 1000)) ] && echo "# time $label $((ms / 1000)) s"
    return 0
}

# run_criterion BIN LABEL: counts from Criterion's TAP output.
run_criterion() {
    local bin=$1 label=$2
    local tap="$LOGDIR/$label.tap" err="$LOGDIR/$label.err" p f s rc t0=$EPOCHREALTIME
    timeout 600 "${SAN_PREFIX[@]}" "$bin" --tap="$tap" >"$err" 2>&1
    rc=$?
    note_time "$label" "$t0"
    p=$(grep -c '^ok - ' "$tap" 2>/dev/null)
    s=$(grep -c '^ok - .*# SKIP' "$tap" 2>/dev/null)
    f=$(grep -c '^not ok - ' "$tap" 2>/dev/null)
    p=$((p - s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL: $label -- exited $rc without a failing test (crash or timeout); see $err"
    fi
    grep '^not ok - ' "$tap" 2>/dev/null | sed "s/^not ok - /FAIL: $label: /"
    grep '^ok - .*# SKIP' "$tap" 2>/dev/null | sed "s/^ok - /SKIP: $label: /"
    if [ "$f" -gt 0 ]; then
        grep -E '^\[----\]|^\[FAIL\]|ERROR|Sanitizer' "$err" | head -40 | sed 's/^/#   /'
    fi
    T_P=$((T_P + p))
    T_F=$((T_F + f))
    T_S=$((T_S + s))
}

# run_script SCRIPT LABEL: counts the script's PASS:/FAIL:/SKIP: lines.
run_script() {
    local script=$1 label=$2
    local out="$LOGDIR/$label.log" rc p f s t0=$EPOCHREALTIME
    # </dev/null: whatever stdin the runner has (a CI pipe) is not the scripts'; `runjob run`
    # notes on stderr a stdin it cannot pass, and scripts compare stderr.
    timeout 900 "${SAN_PREFIX[@]}" bash "$script" >"$out" 2>&1 </dev/null
    rc=$?
    note_time "$label" "$t0"
    p=$(grep -c '^PASS: ' "$out")
    f=$(grep -c '^FAIL: ' "$out")
    s=$(grep -c '^SKIP: ' "$out")
    grep -E '^(FAIL|SKIP): ' "$out"
    [ "${VERBOSE:-0}" = 1 ] && grep -E '^PASS: ' "$out"
    grep -E '^# .*(RSS|fds|threads|execs|MB/s|memcheck)' "$out"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL: $label -- exited $rc without a FAIL line; last lines of $out:"
        tail -15 "$out" | sed 's/^/#   /'
    elif [ "$f" -gt 0 ]; then
        grep -B2 -A8 '^FAIL: ' "$out" | grep -v -E '^(PASS|FAIL):' | head -30 | sed 's/^/#   /'
    fi
    T_P=$((T_P + p))
    T_F=$((T_F + f))
    T_S=$((T_S + s))
}

# san_run LABEL CMD...: CMD with every sanitizer report of every process it starts (the server,
# clients, test workers) written to $LOGDIR/LABEL.san.PID instead of stderr. A server stopped
# at a script's cleanup has its exit status (66 for a TSan report) checked by nobody, so any
# such file fails the test (san_check).
san_run() {
    local label=$1 log=$ROOT/$LOGDIR/$1.san
    shift
    rm -f "$log".*
    ASAN_OPTIONS="log_path=$log ${ASAN_OPTIONS:-}" UBSAN_OPTIONS="log_path=$log ${UBSAN_OPTIONS:-}" \
        TSAN_OPTIONS="log_path=$log ${TSAN_OPTIONS:-}" "$@"
    san_check "$label"
}

san_check() {
    local f
    for f in "$LOGDIR/$1".san.*; do
        [ -f "$f" ] || continue
        T_F=$((T_F + 1))
        echo "FAIL: $1 -- sanitizer report in $f"
        grep -E '^(SUMMARY|WARNING|ERROR):' "$f" | sort | uniq -c | head -8 | sed 's/^/#   /'
    done
}

# host_script_runnable LABEL: whether a host script can run here. They start jobs through a
# real server (namespaces, cgroups, a job user), which takes root; run by anyone else, each is
# one SKIP line, as each C host test skips alike.
host_script_runnable() {
    [ "$(id -u)" = 0 ] && return 0
    echo "SKIP: $1 -- needs root (a real server starts jobs: namespaces, cgroups)"
    T_S=$((T_S + 1))
    return 1
}

# san_usable NAME BIN: whether the sanitizer runtime works on this host, asked of BIN
# (--version) before any test runs under it; what the host refuses is said on a SKIP line, not
# reported as a failure of every test.
#  - TSan (gcc 12's) cannot map its shadow memory where the kernel randomises mmap with more bits
#    than it expects (vm.mmap_rnd_bits 32 on newer kernels: "unexpected memory mapping"). The
#    tier then runs with address space randomisation off (setarch -R, inherited by everything it
#    starts), the usual workaround, and says so; if even that fails, the tier is skipped.
#  - LeakSanitizer stops the world with ptrace at each process's exit; where ptrace is refused
#    (Yama ptrace_scope 3, a seccomp filter around the tests) it dies ("LeakSanitizer has
#    encountered a fatal error") in every process. Leak checks are then off for the tier
#    (SAN_LEAKS), ASan and UBSan stay on.
san_usable() {
    local name=$1 bin=$2 out
    [ -x "$bin" ] || return 0 # not built: nothing runs under it anyway
    out=$("$bin" --version 2>&1 >/dev/null)
    case $name in
    tsan)
        grep -q 'FATAL: ThreadSanitizer' <<<"$out" || return 0
        if setarch "$(uname -m)" -R "$bin" --version >/dev/null 2>&1; then
            SAN_PREFIX=(setarch "$(uname -m)" -R)
            echo "# tsan: the runtime cannot start with this kernel's mmap randomisation" \
                "(vm.mmap_rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null)): the tier runs with it off (setarch -R)"
            return 0
        fi
        echo "SKIP: tsan: the whole tier -- ThreadSanitizer cannot start here: $(grep -m1 'FATAL: ThreadSanitizer' <<<"$out")"
        T_S=$((T_S + 1))
        return 1
        ;;
    asan)
        grep -q 'LeakSanitizer has encountered a fatal error' <<<"$out" || return 0
        SAN_LEAKS=detect_leaks=0
        echo "SKIP: asan: leak checks -- LeakSanitizer cannot ptrace here" \
            "(kernel.yama.ptrace_scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo none)," \
            "or a seccomp filter); ASan and UBSan stay on"
        T_S=$((T_S + 1))
        ;;
    esac
    return 0
}

# tier NAME: runs everything of a tier and records its summary.
tier() {
    local name=$1 dir bdir t
    T_P=0
    T_F=0
    T_S=0
    local start=$SECONDS
    echo "== tier $name"
    case $name in
    unit | host)
        for t in "$BUILD"/test/"$name"/test_*; do
            [ -x "$t" ] && [ -f "$t" ] || continue
            RUNJOB_BIN=${RUNJOB_BIN:-$ROOT/bin/runjob} run_criterion "$t" "$name-$(basename "$t")"
        done
        [ "$name" = host ] && for t in test/host/test_*.sh; do
            [ -f "$t" ] || continue
            host_script_runnable "host-$(basename "$t" .sh)" || continue
            RUNJOB_BIN=${RUNJOB_BIN:-$ROOT/bin/runjob} run_script "$t" "host-$(basename "$t" .sh)"
        done
        ;;
    asan | tsan)
        # The same unit and host tiers against the sanitizer build (make asan / make tsan).
        bdir=$BUILD/$name
        local supp=$LOGDIR/tsan-suppressions.txt
        { cat test/tsan/suppressions.txt
          for lib in /lib/x86_64-linux-gnu/libabsl_*.so.*; do
              [ -e "$lib" ] && echo "called_from_lib:$(basename "$lib")"
          done; } >"$supp"
        export TSAN_OPTIONS="suppressions=$ROOT/$supp second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
        export LSAN_OPTIONS="suppressions=$ROOT/test/asan/lsan-suppressions.txt print_suppressions=0 ${LSAN_OPTIONS:-}"
        # Excluded under TSan, by name (reported as skipped):
        #  cg_v1::pids_limit_holds counts the tasks a pids-limited cgroup admits (pids.max=5:
        #    the child and 4 forks). Under TSan a process forked from a single-threaded one
        #    starts TSan's background thread, which takes one of the 5 (3 forks, every time).
        export CRSHIM_EXCLUDE=
        [ "$name" = tsan ] &&
            CRSHIM_EXCLUDE="cg_v1::pids_limit_holds"
        SAN_PREFIX=()
        SAN_LEAKS=
        if san_usable "$name" "$bdir/runjob"; then
            for dir in unit host; do
                for t in "$bdir"/test/"$dir"/test_*; do
                    [ -x "$t" ] && [ -f "$t" ] || continue
                    # test_seccomp's workers load the filter under test, which denies ptrace;
                    # LeakSanitizer's check at exit stops the world with ptrace and dies there
                    # ("LeakSanitizer has encountered a fatal error"). Only leak checking is off
                    # for it; ASan and UBSan stay on.
                    local lsan=$SAN_LEAKS
                    [ "$(basename "$t")" = test_seccomp ] && lsan=detect_leaks=0
                    RUNJOB_BIN=$ROOT/$bdir/runjob ASAN_OPTIONS="$lsan ${ASAN_OPTIONS:-}" \
                        san_run "$name-$dir-$(basename "$t")" \
                        run_criterion "$t" "$name-$dir-$(basename "$t")"
                done
            done
            for t in test/host/test_*.sh; do
                [ -f "$t" ] || continue
                host_script_runnable "$name-host-$(basename "$t" .sh)" || continue
                RUNJOB_BIN=$ROOT/$bdir/runjob RJ_SANITIZER=$name ASAN_OPTIONS="$SAN_LEAKS ${ASAN_OPTIONS:-}" \
                    san_run "$name-host-$(basename "$t" .sh)" \
                    run_script "$t" "$name-host-$(basename "$t" .sh)"
            done
        fi
        SAN_PREFIX=()
        ;;
    vm | tls | interop | fuzz | valgrind)
        BUILD=$BUILD run_script "test/$name/run.sh" "$name"
        ;;
    *)
        echo "unknown tier '$name'" >&2
        T_F=1
        ;;
    esac
    local line="tier $name: $T_P passed, $T_F failed, $T_S skipped ($((SECONDS - start)) s)"
    echo "$line"
    SUMMARY+=("$line")
    TOTAL_PASS=$((TOTAL_PASS + T_P))
    TOTAL_FAIL=$((TOTAL_FAIL + T_F))
    TOTAL_SKIP=$((TOTAL_SKIP + T_S))
}

if [ $# -gt 0 ]; then
    TIERS=("$@")
else
    TIERS=(unit host)
    for t in asan tsan; do [ -d "$BUILD/$t/test" ] && TIERS+=("$t"); done
    for t in vm tls interop fuzz valgrind; do [ -f "test/$t/run.sh" ] && TIERS+=("$t"); done
fi

for t in "${TIERS[@]}"; do
    tier "$t"
done

echo "== slowest"
printf '%s\n' "${TIMES[@]}" | sort -rn | head -10 | sed 's/^\([0-9.]*\) \(.*\)/# time \2 \1 s/'
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
[ "$TOTAL_FAIL" -eq 0 ]
