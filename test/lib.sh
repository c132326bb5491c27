# Shared helpers for shell test scripts (test/host/test_*.sh, test/tls, test/interop...).
# Source it; then report each case with `ok NAME`, `fail NAME WHY` or `check NAME CMD...`.
# The tier runner (test/run.sh) counts the "PASS: " / "FAIL: " lines; a script that exits
# non-zero without a FAIL line is counted as one failure.
#
# Server helpers: rj_setup makes a temp dir with fresh certificates; rj_server_start starts
# `runjob serve` on a free loopback port with a temp state dir; rj (client) and rj_as USER run
# the client against it; everything is torn down at exit (only processes we started, by pid).

RJ_ROOT=${RJ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
RUNJOB=${RUNJOB_BIN:-$RJ_ROOT/bin/runjob}
T_PASSED=0
T_FAILED=0
RJ_PIDS=()

ok() {
    T_PASSED=$((T_PASSED + 1))
    echo "PASS: $1"
}

fail() {
    T_FAILED=$((T_FAILED + 1))
    echo "FAIL: $1${2:+ -- $2}"
}

# check NAME CMD...: passes when CMD exits 0.
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name" "command failed: $*"; fi
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# expect_match NAME REGEX TEXT
expect_match() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1" "'$3' does not match /$2/"; fi
}

t_done() {
    echo "# $(basename "$0"): $T_PASSED passed, $T_FAILED failed"
    [ "$T_FAILED" -eq 0 ]
}

rj_cleanup() {
    local p
    for p in "${RJ_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${RJ_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    [ -n "${RJ_TMP:-}" ] && rm -rf "$RJ_TMP"
}

# rj_pubdir: a new directory (path on stdout) that jobs can see: not below /tmp, /var/tmp or
# /dev/shm, which every job gets empty and of its own. The caller removes it.
rj_pubdir() {
    mktemp -d /var/lib/runjob-pub.XXXXXX
}

# rj_swap_escapes_memory_limits: why a job over its memory limit would be paged out to swap
# here rather than OOM-killed (swap on, and no swap accounting in the cgroups: v1 without
# memory.memsw.*, v2 without memory.swap.max), on stdout; nothing where memory limits hold.
rj_swap_escapes_memory_limits() {
    [ "$(wc -l </proc/swaps 2>/dev/null || echo 0)" -gt 1 ] || return 0
    [ -e /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ] && return 0
    compgen -G '/sys/fs/cgroup/*/memory.swap.max' >/dev/null && return 0
    echo "swap is on and the cgroups do not account it (no memory.memsw.* or memory.swap.max)"
}

# rj_setup: temp dir + certificates (users alice, bob, administrator).
rj_setup() {
    RJ_TMP=$(mktemp -d /tmp/runjob-test.XXXXXX)
    RJ_CERTS=$RJ_TMP/certs
    trap rj_cleanup EXIT
    "$RUNJOB" certs -q --out "$RJ_CERTS" --user alice --user bob --user administrator >/dev/null ||
        { echo "FAIL: rj_setup -- runjob certs failed"; exit 1; }
}

# A free TCP port on 127.0.0.1 (asks the kernel, then releases it).
rj_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# rj_server_start [extra serve flags...]: sets RJ_PORT, RJ_STATE, RJ_SERVER_PID, RJ_SERVER_LOG.
rj_server_start() {
    RJ_PORT=${RJ_PORT:-$(rj_free_port)}
    RJ_STATE=${RJ_STATE:-$RJ_TMP/state}
    RJ_SERVER_LOG=$RJ_TMP/server.log
    "$RUNJOB" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$RJ_STATE" \
        --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
        --server-cert-path "$RJ_CERTS/server-cert.pem" \
        --server-key-path "$RJ_CERTS/server-key.pem" "$@" >>"$RJ_SERVER_LOG" 2>&1 &
    RJ_SERVER_PID=$!
    RJ_PIDS+=("$RJ_SERVER_PID")
    for _ in $(seq 100); do
        rj_as alice ping >/dev/null 2>&1 && return 0
        kill -0 "$RJ_SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "FAIL: rj_server_start -- server did not come up; log:"
    sed 's/^/#   /' "$RJ_SERVER_LOG"
    exit 1
}

# rj_server_stop: SIGTERM and wait (the server stops its jobs and exits 0).
rj_server_stop() {
    kill -TERM "$RJ_SERVER_PID" 2>/dev/null
    wait "$RJ_SERVER_PID"
}

# rj_server_stop_clean PID WHAT: SIGTERM a server started by this shell and check it exits 0
# within 15 s (killed and failed otherwise).
rj_server_stop_clean() {
    local pid=$1 what=$2 rc st
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do # our child: once it exits it is a zombie until waited for
        st=$(sed -E 's/.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null)
        [ -z "$st" ] || [ "${st:0:1}" = Z ] && break
        sleep 0.1
    done
    if [ -n "$st" ] && [ "${st:0:1}" != Z ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        fail "$what exits 0 on SIGTERM" "still running 15 s after SIGTERM"
        return
    fi
    wait "$pid"
    rc=$?
    expect_eq "$what exits 0 on SIGTERM" 0 "$rc"
}

# rj_threads PID: "OURS GRPC": the server's own threads (runjob, or named rj-*)
# and gRPC's pool threads (default-executor, event_engine, timers), which grow with load up to
# caps of their own and stay: growth there is not a leak.
rj_threads() {
    local ours=0 all=0 c
    for c in /proc/"$1"/task/*/comm; do
        all=$((all + 1))
        case "$(cat "$c" 2>/dev/null)" in runjob | rj-*) ours=$((ours + 1)) ;; esac
    done
    echo "$ours $((all - ours))"
}

# rj_expect_threads_flat NAME "OURS GRPC" "OURS GRPC": ours may not grow (one spare: the shim
# pool's thread comes and goes with jobs); gRPC's pools must stay under 32 threads.
rj_expect_threads_flat() {
    local o0 g0 o1 g1
    read -r o0 g0 <<<"$2"
    read -r o1 g1 <<<"$3"
    echo "# $1: our threads $o0 -> $o1, gRPC's pool threads $g0 -> $g1"
    if [ "$o1" -le $((o0 + 1)) ] && [ "$g1" -le 32 ]; then
        ok "$1"
    else
        fail "$1" "our threads $o0 -> $o1, gRPC's $g0 -> $g1"
    fi
}

# rj_flood N HOLD [STOPFILE]: N plain TCP connections to the test server (no TLS), held HOLD
# seconds (or until STOPFILE exists), then closed; says "flood: N connections open" once they are.
rj_flood() {
    python3 - "$RJ_PORT" "$1" "$2" "${3:-}" <<'PY'
import os, resource, socket, sys, time
port, n, hold, stop = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
socks = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    socks.append(s)
print("flood: %d connections open" % len(socks), flush=True)
end = time.monotonic() + hold
while time.monotonic() < end and not (stop and os.path.exists(stop)):
    time.sleep(min(0.1, max(0, end - time.monotonic())))
for s in socks:
    s.close()
PY
}

# rj_as USER VERB ARGS...: the client as USER against the test server.
rj_as() {
    local user=$1
    shift
    local verb=$1
    shift
    "$RUNJOB" "$verb" -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
        --client-cert-path "$RJ_CERTS/$user-cert.pem" \
        --client-key-path "$RJ_CERTS/$user-key.pem" "$@"
}

# rj VERB ARGS...: the client as alice.
rj() {
    rj_as alice "$@"
}
