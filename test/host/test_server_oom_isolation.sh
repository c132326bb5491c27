#!/usr/bin/env bash
# One job's OOM kill stays that job's. Job B fills its /dev/shm (charged to it, in nobody's RSS)
# past its memory limit next to job A: B is OOM-killed, A runs on, and so does the server's
# shim template. Where the server may set OOM scores (CAP_SYS_RESOURCE), the template's shims
# share its memory at -1000 (the kernel kills every process sharing its victim's memory), and
# the test/vm tier checks that mode; a job's own processes are at 0 either way, and cannot go
# lower.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

expect_eq "a job's OOM score adjustment is 0, and cannot be lowered" "0" \
    "$(rj_as alice run /bin/sh -c 'cat /proc/self/oom_score_adj
        (echo -1 >/proc/self/oom_score_adj) 2>/dev/null && echo lowered' 2>&1)"

# field NAME < json: the value of a top-level scalar field of `status -o json`.
field() { tr -d '\n' | grep -oE "\"$1\": *(\"[^\"]*\"|[a-z0-9]+)" | head -n 1 | sed -E 's/^[^:]*: *//; s/"//g'; }

A=$(rj_as alice start /bin/sleep 60)
B=$(rj_as alice start --memory 32M /bin/sh -c 'head -c 64M /dev/zero >/dev/shm/x; sleep 1')
for _ in $(seq 100); do
    [ "$(rj_as alice status -o json "$B" | field is_running)" = false ] && break
    sleep 0.2
done
st=$(rj_as alice status -o json "$B")
expect_eq "job b is OOM-killed" "true" "$(field oom_killed <<<"$st")"
st=$(rj_as alice status -o json "$A")
expect_eq "job a runs on" "running" "$(field state <<<"$st")"
expect_eq "a job after both" "after" "$(rj_as alice run /bin/echo after 2>&1)"
rj_as alice stop "$A" >/dev/null 2>&1
t_done
