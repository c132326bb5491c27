#!/bin/bash
# valgrind memcheck on a scripted server session: start, a stream to the end, a following
# stream to the job's end, streams cancelled mid-way (clients SIGKILLed), stop, a job and a
# stream still running at SIGTERM; then the server exits and memcheck must find no block
# definitely lost and no memory error. The server is the unsanitized dynamic build
# (make valgrind: $BUILD/debug/runjob; valgrind cannot replace malloc in the static bin/runjob),
# with test/valgrind/vgpreload.c so that it can start jobs under valgrind (clone3,
# /proc/self/exe). The clients are the release binary.
. "$(dirname "$0")/../lib.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$RJ_ROOT/$BUILD ;; esac
VG_SERVER=$BUILD/debug/runjob
VG_PRELOAD=$BUILD/debug/vgpreload.so

if ! command -v valgrind >/dev/null; then
    echo "SKIP: valgrind is not installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: valgrind session needs root (its jobs run on a real server: namespaces, cgroups)"
    exit 0
fi
for f in "$VG_SERVER" "$VG_PRELOAD" "$RUNJOB"; do
    [ -e "$f" ] || { echo "FAIL: valgrind session -- $f missing (make all valgrind)"; exit 1; }
done
# vgpreload.c can stand in for clone3 only where jobs are not cloned into their cgroup: where
# the server uses cgroup v2 (pure v2, or a unified hierarchy with cpu, memory, io and pids).
v2_ctl=$(cat /sys/fs/cgroup/cgroup.controllers /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)
v2_all=1
for c in cpu memory io pids; do
    grep -qw "$c" <<<"$v2_ctl" || v2_all=0
done
if [ ! -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || [ "$v2_all" = 1 ]; then
    echo "SKIP: valgrind session needs cgroup v1 controllers (clone3 is missing under valgrind)"
    exit 0
fi

rj_setup
RJ_PORT=$(rj_free_port)
RJ_STATE=$RJ_TMP/state
VG_LOG=$RJ_TMP/memcheck.log
LD_PRELOAD=$VG_PRELOAD valgrind --log-file="$VG_LOG" --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite \
    --num-callers=40 "$VG_SERVER" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$RJ_STATE" \
    --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
    --server-cert-path "$RJ_CERTS/server-cert.pem" \
    --server-key-path "$RJ_CERTS/server-key.pem" >"$RJ_TMP/server.log" 2>&1 &
RJ_SERVER_PID=$!
RJ_PIDS+=("$RJ_SERVER_PID")
for _ in $(seq 600); do
    rj ping >/dev/null 2>&1 && break
    kill -0 "$RJ_SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
rj ping >/dev/null 2>&1 || {
    echo "FAIL: the server under valgrind came up -- log:"
    sed 's/^/#   /' "$RJ_TMP/server.log" "$VG_LOG"
    exit 1
}
ok "the server under valgrind came up"

# wait_state ID REGEX: polls the job's status (up to 60 s).
wait_state() {
    for _ in $(seq 300); do
        rj status "$1" 2>/dev/null | grep -Eq "$2" && return 0
        sleep 0.2
    done
    return 1
}

# wait_bytes FILE: until FILE has some output (up to 60 s).
wait_bytes() {
    for _ in $(seq 300); do
        [ -s "$1" ] && return 0
        sleep 0.2
    done
    return 1
}

# 1. A finished job, streamed to the end (stdout and stderr).
F=$(rj start /bin/sh -c 'seq 1 5000; echo to-stderr >&2')
check "start" test -n "$F"
check "the job ends" wait_state "$F" exited
expect_eq "a complete stream" 5001 "$(rj stream "$F" 2>&1 | wc -l)"

# 2. A following stream from the start to the job's end.
G=$(rj start /bin/sh -c 'for i in 1 2 3 4 5; do echo $i; sleep 0.2; done')
expect_eq "a following stream ends with the job" "1 2 3 4 5" "$(rj stream "$G" | tr '\n' ' ' | sed 's/ $//')"

# 3. Cancelled streams: a ticking job and a big one, their followers SIGKILLed mid-way.
L=$(rj start /bin/sh -c 'while :; do echo tick; sleep 0.05; done')
B=$(rj start /bin/sh -c 'seq 1 3000000')
cancelled=0
for id in "$L" "$L" "$B" "$B"; do
    out=$RJ_TMP/cancel.$cancelled
    rj stream "$id" >"$out" 2>&1 &
    pid=$!
    wait_bytes "$out" && cancelled=$((cancelled + 1))
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done
expect_eq "streams cancelled mid-way by SIGKILLed clients" 4 "$cancelled"

# 4. Stop.
check "stop a running job" rj stop "$L"
check "the stopped job is killed" wait_state "$L" killed

# 5. At SIGTERM: a running job with a following stream.
S=$(rj start /bin/sleep 1000)
check "a job runs at shutdown" wait_state "$S" running
rj stream "$S" >/dev/null 2>&1 &
follower=$!
sleep 1
kill -TERM "$RJ_SERVER_PID"
wait "$RJ_SERVER_PID"
expect_eq "SIGTERM: the server under valgrind exits 0" 0 "$?"
wait "$follower" 2>/dev/null

# The verdict.
if ! grep -q 'ERROR SUMMARY' "$VG_LOG"; then
    fail "memcheck wrote its summary" "$(tail -5 "$VG_LOG")"
    t_done
    exit
fi
figure() { # figure KIND: "N bytes in M blocks" (0 when memcheck found nothing to list)
    local l
    l=$(grep -E "==[0-9]+== +$1: " "$VG_LOG" | tail -1 | sed -E "s/.*$1: //")
    echo "${l:-0 bytes in 0 blocks}"
}
for k in "definitely lost" "indirectly lost" "possibly lost" "still reachable"; do
    echo "# memcheck: $k: $(figure "$k")"
done
echo "# memcheck: $(grep -E '==[0-9]+== +total heap usage' "$VG_LOG" | sed -E 's/.*total heap usage: //')"
expect_match "memcheck: 0 bytes definitely lost" '^0 bytes ' "$(figure "definitely lost")"
errors=$(grep -E '==[0-9]+== ERROR SUMMARY' "$VG_LOG" | tail -1 | sed -E 's/.*ERROR SUMMARY: ([0-9]+).*/\1/')
expect_eq "memcheck: no memory errors (invalid reads/writes, uninitialised values)" 0 "$errors"
if [ "$T_FAILED" -gt 0 ]; then
    echo "# memcheck log ($VG_LOG):"
    grep -E '==[0-9]+== ' "$VG_LOG" | head -150 | sed 's/^/#   /'
fi
t_done
