#!/usr/bin/env bash
# --metrics-file: the Prometheus text format, rewritten atomically every --metrics-interval and
# at shutdown, with jobs by state, running jobs by owner, Starts and their latency, calls by
# method and code, and the process's fds, memory and threads.
. "$(dirname "$0")/../lib.sh"
rj_setup
M=$RJ_TMP/runjob.prom
rj_server_start --metrics-file "$M" --metrics-interval 1s

for _ in $(seq 50); do [ -s "$M" ] && break; sleep 0.1; done
check "the file is written once the server serves" test -s "$M"
A=$(rj_as alice start /bin/sleep 30)
rj_as alice run /bin/true >/dev/null
rj_as bob start /bin/sleep 30 >/dev/null
rj_as alice stop --grace 2h 3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f >/dev/null 2>&1 # above the maximum
sleep 2.2 # two rewrites
TEXT=$(cat "$M")
expect_match "running jobs by state" '^runjob_jobs\{state="running"\} 2$' "$TEXT"
expect_match "ended jobs by state" '^runjob_jobs\{state="exited"\} 1$' "$TEXT"
expect_match "running jobs by owner (alice)" '^runjob_running_jobs\{user="alice"\} 1$' "$TEXT"
expect_match "running jobs by owner (bob)" '^runjob_running_jobs\{user="bob"\} 1$' "$TEXT"
expect_match "Starts counted in the latency histogram" '^runjob_start_seconds_count 3$' "$TEXT"
expect_match "the histogram's +Inf bucket holds every Start" '^runjob_start_seconds_bucket\{le="\+Inf"\} 3$' "$TEXT"
expect_match "calls by method and code" '^runjob_calls_total\{method="Start",code="OK"\} 3$' "$TEXT"
expect_match "refused calls by their code" '^runjob_calls_total\{method="Stop",code="INVALID_ARGUMENT"\} 1$' "$TEXT"
expect_match "open fds" '^process_open_fds [0-9]+$' "$TEXT"
expect_match "resident memory" '^process_resident_memory_bytes [1-9][0-9]+$' "$TEXT"
bad=$(grep -vE '^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+)$' "$M")
expect_eq "every line is the text format" "" "$bad"
check "no temporary file is left" test ! -e "$M.tmp"

# runjob metrics: the same text over the API, for administrators only.
out=$(rj_as administrator metrics 2>&1)
expect_match "runjob metrics (administrator) prints the jobs by state" '^runjob_jobs\{state="running"\} 2$' "$out"
expect_match "and the calls" 'runjob_calls_total\{method="Start",code="OK"\} 3' "$out"
out=$(rj_as alice metrics 2>&1)
rc=$?
expect_match "runjob metrics is refused to other users" 'PERMISSION_DENIED' "$out"
[ "$rc" -ne 0 ] && ok "with a non-zero exit ($rc)" || fail "with a non-zero exit" "exit 0"

rj_as alice stop --grace 0 "$A" >/dev/null
rj_server_stop
TEXT=$(cat "$M")
expect_match "the last rewrite, at shutdown, has no job running" '^runjob_jobs\{state="running"\} 0$' "$TEXT"
expect_match "and the Stop counted" '^runjob_calls_total\{method="Stop",code="OK"\} 1$' "$TEXT"
expect_match "and the refused Metrics call" '^runjob_calls_total\{method="Metrics",code="PERMISSION_DENIED"\} 1$' "$TEXT"
t_done
