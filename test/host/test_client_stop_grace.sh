#!/usr/bin/env bash
# runjob stop without --grace waits out the server's own default grace, whatever it is: against
# a server started with a --stop-grace longer than the usual 10 s and a job that ignores
# SIGTERM, stop returns the job killed after that grace, not a client-side DEADLINE_EXCEEDED.
# RJ_STOP_GRACE_S=45 outlasts the 30 s + 10 s a client used to allow (about a minute).
source "$(dirname "$0")/../lib.sh"
rj_setup
GRACE_S=${RJ_STOP_GRACE_S:-15}
rj_server_start --stop-grace "${GRACE_S}s"

id=$(rj start /bin/sh -c 'trap "" TERM; echo ready; exec sleep 600')
for _ in $(seq 100); do
    [ "$(rj stream --no-follow -s stdout "$id" 2>/dev/null)" = ready ] && break
    sleep 0.1
done
t0=$(date +%s%N)
out=$(rj stop "$id" 2>"$RJ_TMP/stop.err")
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "# stop took $ms ms against a ${GRACE_S}s grace"
expect_eq "stop without --grace exits 0 after the server's grace" "0 " "$rc $(cat "$RJ_TMP/stop.err")"
expect_match "the job was killed at the end of the grace" "killed +- +SIGKILL" "$out"
check "stop waited out the server's ${GRACE_S}s grace, past the usual 10 s" \
    test "$ms" -ge $((GRACE_S * 1000 - 500))

t_done
