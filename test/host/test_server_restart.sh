#!/bin/bash
# Restart: finished jobs keep their status and full output; a job that was running when the
# server was SIGKILLed is LOST with a clear error, and none of its processes survived.
# SIGTERM stops running jobs (not LOST afterwards) and the server exits 0. Neither way leaves a
# cgroup behind, the ones made ahead for prepared job slots included.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start
MARK=$((7000 + $$ % 1000))

F=$(rj start /bin/sh -c 'seq 1 20000; echo to-stderr >&2')
R=$(rj start /bin/sleep "$MARK.5")
for _ in $(seq 50); do rj status "$F" 2>/dev/null | grep -q exited && break; sleep 0.1; done
before=$(rj stream "$F" 2>&1 | sha256sum)
pgrep -f "sleep $MARK.5" >/dev/null && ok "the running job runs" || fail "the running job runs"

# The server keeps two job slots prepared ahead of Starts: a folder without a record, and the
# job's cgroup. A kill -9 leaves both; the next server must remove both, so no cgroup leaks.
prepared_ids() {
    local d
    for d in "$RJ_STATE"/*-*-*-*-*; do
        [ -d "$d" ] && [ ! -e "$d/status" ] && basename "$d"
    done
}
cg_dirs() { find /sys/fs/cgroup -mindepth 2 -type d -name "$1" 2>/dev/null; }
for _ in $(seq 50); do [ "$(prepared_ids | wc -l)" -ge 2 ] && break; sleep 0.1; done
P=$(prepared_ids)
expect_eq "two slots are prepared" 2 "$(echo "$P" | grep -c .)"
n=0
for id in $P; do [ -n "$(cg_dirs "$id")" ] && n=$((n + 1)); done
expect_eq "each prepared slot has its cgroup made ahead" 2 "$n"

kill -KILL "$RJ_SERVER_PID"
wait "$RJ_SERVER_PID" 2>/dev/null
left=
for id in $P; do left="$left$(cg_dirs "$id")"; done
[ -n "$left" ] && ok "SIGKILL leaves the prepared cgroups (the restart's to remove)" ||
    fail "SIGKILL leaves the prepared cgroups (the restart's to remove)" "none found"
for _ in $(seq 30); do pgrep -f "sleep $MARK.5" >/dev/null || break; sleep 0.1; done
pgrep -f "sleep $MARK.5" >/dev/null && fail "SIGKILL of the server leaves no job process" \
    "$(pgrep -af "sleep $MARK.5")" || ok "SIGKILL of the server leaves no job process"

rj_server_start
left=
for id in $P; do left="$left$(cg_dirs "$id")$([ -e "$RJ_STATE/$id" ] && echo " $id")"; done
expect_eq "restart removes the dead server's prepared folders and cgroups" "" "$left"
expect_eq "restart removes the lost job's cgroup" "" "$(cg_dirs "$R")"
P2=$(prepared_ids)
n=0
for id in $P2; do [ -n "$(cg_dirs "$id")" ] && n=$((n + 1)); done
expect_eq "the new server prepares slots with cgroups again" 2 "$n"
after=$(rj stream "$F" 2>&1 | sha256sum)
expect_eq "finished job's output survives the restart" "$before" "$after"
expect_eq "stdout and stderr both kept" "20001" "$(rj stream "$F" 2>&1 | wc -l)"
out=$(rj status "$F" 2>&1)
expect_match "finished job is still exited" 'exited' "$out"
out=$(rj status "$R" 2>&1)
expect_match "running job became lost" 'lost' "$out"
expect_match "with a clear error" 'server restarted while the job was running' "$out"
check "following a lost job ends at once, cleanly" timeout 10 "$RUNJOB" stream -H 127.0.0.1 \
    -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" "$R"

# SIGTERM: running jobs are stopped (signal, grace) and recorded; the server exits 0.
S=$(rj start /bin/sleep "$MARK.7")
for _ in $(seq 50); do [ "$(prepared_ids | wc -l)" -ge 2 ] && break; sleep 0.1; done
P3=$(prepared_ids)
rj_server_stop
expect_eq "SIGTERM: server exits 0" 0 "$?"
left=
for id in $P3 $S; do left="$left$(cg_dirs "$id")"; done
expect_eq "SIGTERM: no prepared slot's or job's cgroup is left" "" "$left"
pgrep -f "sleep $MARK.7" >/dev/null && fail "SIGTERM stops the jobs" || ok "SIGTERM stops the jobs"
rj_server_start
out=$(rj status "$S" 2>&1)
expect_match "a job stopped by shutdown is killed, not lost" 'killed' "$out"
t_done
