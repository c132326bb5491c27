#!/bin/bash
# Load: a reader that takes 1 byte per 10 ms stays attached while its job
# writes 1 GiB: gRPC flow control holds the server back, so the server's peak RSS stays within
# 32 MiB of its idle figure (the output waits on disk, not in memory). Then 1000 clients
# connect, start a Stream and vanish with a TCP RST: no fd, thread or memory growth after.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --max-output-bytes 2GiB
GIB=1073741824

snap() { # threads fds rss_kib hwm_kib
    local p=/proc/$RJ_SERVER_PID
    echo "$(awk '/^Threads:/{print $2}' $p/status) $(ls $p/fd | wc -l)" \
        "$(awk '/^VmRSS:/{print $2}' $p/status) $(awk '/^VmHWM:/{print $2}' $p/status)"
}

# --- Slow reader. The job waits for a flag file (jobs see the host's /tmp), so that the reader
# is attached and reading before the first of the GiB is written.
GO=$(rj_pubdir)
chmod 755 "$GO"
J=$(rj start /bin/sh -c "echo ready; i=0; while [ ! -e $GO/go ] && [ \$i -lt 600 ]; do
    sleep 0.1; i=\$((i+1)); done; head -c $GIB /dev/zero; echo done")
# 1 byte per 10 ms from the stream client's stdout; the count so far goes to a file.
python3 -c '
import os, sys, time
n = 0
while os.read(0, 1):
    n += 1
    with open(sys.argv[1] + ".tmp", "w") as f: f.write(str(n))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.01)
' "$RJ_TMP/slow.count" < <(rj stream "$J" 2>/dev/null) &
SLOW=$!
for _ in $(seq 300); do [ -s "$RJ_TMP/slow.count" ] && break; sleep 0.1; done
[ -s "$RJ_TMP/slow.count" ] && ok "the slow reader is attached and reading" ||
    fail "the slow reader is attached and reading"
sleep 1
read -r th0 fd0 rss0 _ <<<"$(snap)"
echo 5 >/proc/$RJ_SERVER_PID/clear_refs # resets VmHWM to the current RSS
touch "$GO/go"
for _ in $(seq 1200); do
    rj status -o json "$J" 2>/dev/null | grep -q '"is_running":false' && break
    sleep 0.1
done
st=$(rj status -o json "$J" 2>&1)
expect_match "the job wrote its GiB and exited 0" '"state":"exited".*"exit_code":0' "$st"
expect_match "all of it was recorded" "\"output_bytes\":$((GIB + 11))," "$st"
read -r th1 fd1 rss1 hwm1 <<<"$(snap)"
got=$(cat "$RJ_TMP/slow.count")
# Is the reader still held back? Its stream client must not have slurped the GiB either.
cpid=$(pgrep -f -n "stream .*$J")
crss=$(awk '/^VmRSS:/{print $2}' "/proc/$cpid/status" 2>/dev/null)
echo "# slow reader: read $got bytes while the job wrote 1 GiB; server RSS idle ${rss0} KiB, peak ${hwm1} KiB, now ${rss1} KiB; stream client RSS ${crss:-?} KiB; threads $th0 -> $th1, fds $fd0 -> $fd1"
[ "${got:-0}" -lt 1048576 ] && ok "the reader is still far behind (flow control, not buffering)" ||
    fail "the reader is still far behind" "read $got"
kill -0 "$SLOW" 2>/dev/null && ok "the slow reader is still attached" ||
    fail "the slow reader is still attached"
if [ -z "${RJ_SANITIZER:-}" ]; then
    [ "$hwm1" -le $((rss0 + 32768)) ] && ok "server peak RSS within 32 MiB of idle" ||
        fail "server peak RSS within 32 MiB of idle" "idle $rss0 KiB, peak $hwm1 KiB"
    [ "${crss:-0}" -gt 0 ] && [ "$crss" -le 65536 ] && ok "the stream client holds < 64 MiB" ||
        fail "the stream client holds < 64 MiB" "${crss:-gone} KiB"
else
    echo "# absolute RSS bounds are for the release build (this is $RJ_SANITIZER: shadow memory and quarantine)"
fi
kill "$SLOW" 2>/dev/null
[ -n "$cpid" ] && kill "$cpid" 2>/dev/null
wait "$SLOW" 2>/dev/null
rm -rf "$GO"
# The tail of the record is exact (a full read of the GiB is left to the throughput bench).
expect_eq "the end of the output is exact" "00000000646f6e650a" \
    "$(rj stream --offset $((GIB + 2)) "$J" | od -An -tx1 | tr -d ' \n')"

# --- 1000 clients that start a stream and vanish (RST), 100 at a time.
T=$(rj start /bin/sh -c 'while :; do echo tick; sleep 0.02; done')
rst() {
    python3 "$(dirname "$0")/rst_clients.py" 127.0.0.1 "$RJ_PORT" "$RJ_CERTS/root-ca-cert.pem" \
        "$RJ_CERTS/alice-cert.pem" "$RJ_CERTS/alice-key.pem" "$T" "$1" 100
}
# Warm up (grpc's arenas and the allocator's per-thread pools), then measure.
rst 500 >/dev/null
sleep 1
read -r th0 fd0 rss0 _ <<<"$(snap)"
thr0=$(rj_threads "$RJ_SERVER_PID")
out=$(rst 1000)
expect_eq "1000 clients started a stream, then reset" "streamed 1000 of 1000" "$(head -1 <<<"$out")"
for _ in $(seq 50); do
    [ "$(ss -tnH state established "( sport = :$RJ_PORT )" | wc -l)" -eq 0 ] && break
    sleep 0.1
done
sleep 1
read -r th1 fd1 rss1 _ <<<"$(snap)"
echo "# server after 1000 RST clients: threads $th0 -> $th1, fds $fd0 -> $fd1, RSS ${rss0} KiB -> ${rss1} KiB"
rj_expect_threads_flat "RST: threads flat" "$thr0" "$(rj_threads "$RJ_SERVER_PID")"
[ "$fd1" -le $((fd0 + 4)) ] && ok "RST: fds flat" || fail "RST: fds flat" "$fd0 -> $fd1"
if [ -z "${RJ_SANITIZER:-}" ]; then
    [ "$rss1" -le $((rss0 + 16384)) ] && ok "RST: RSS flat (< 16 MiB growth)" ||
        fail "RST: RSS flat" "$rss0 -> $rss1 KiB"
else
    echo "# RST: the RSS bound is for the release build (ASan keeps freed memory in quarantine)"
fi
n=$(grep -c "method=Stream job=$T code=CANCELLED" "$RJ_SERVER_LOG")
[ "$n" -ge 1500 ] && ok "every vanished stream left an audit line" ||
    fail "every vanished stream left an audit line" "$n of 1500"
out=$(rj status "$T" 2>&1)
expect_match "the server still answers and the job still runs" ' running ' "$out"
rj stop --grace 100ms "$T" >/dev/null
t_done
