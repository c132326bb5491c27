#!/bin/bash
# Restart: finished jobs keep their status and full output; a job that was running when the
# server was SIGKILLed is LOST with a clear error, and none of its processes survived.
# SIGTERM stops running jobs (not LOST afterwards) and the server exits 0.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start
MARK=$((7000 + $$ % 1000))

F=$(rj start /bin/sh -c 'seq 1 20000; echo to-stderr >&2')
R=$(rj start /bin/sleep "$MARK.5")
for _ in $(seq 50); do rj status "$F" 2>/dev/null | grep -q exited && break; sleep 0.1; done
before=$(rj stream "$F" 2>&1 | sha256sum)
pgrep -f "sleep $MARK.5" >/dev/null && ok "the running job runs" || fail "the running job runs"

kill -KILL "$RJ_SERVER_PID"
wait "$RJ_SERVER_PID" 2>/dev/null
for _ in $(seq 30); do pgrep -f "sleep $MARK.5" >/dev/null || break; sleep 0.1; done
pgrep -f "sleep $MARK.5" >/dev/null && fail "SIGKILL of the server leaves no job process" \
    "$(pgrep -af "sleep $MARK.5")" || ok "SIGKILL of the server leaves no job process"

rj_server_start
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
rj_server_stop
expect_eq "SIGTERM: server exits 0" 0 "$?"
pgrep -f "sleep $MARK.7" >/dev/null && fail "SIGTERM stops the jobs" || ok "SIGTERM stops the jobs"
rj_server_start
out=$(rj status "$S" 2>&1)
expect_match "a job stopped by shutdown is killed, not lost" 'killed' "$out"
t_done
