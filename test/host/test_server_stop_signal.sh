#!/usr/bin/env bash
# runjob serve --stop-signal: the first signal of a Stop that names none, and of the stops at
# shutdown; a Stop naming its own signal still sends that one.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --stop-signal QUIT --stop-grace 10s

# A job that says which signal reached it, by its exit code.
TRAPS='trap "exit 3" QUIT; trap "exit 15" TERM; trap "exit 2" INT; sleep 100 & wait'
ID=$(rj_as alice start /bin/sh -c "$TRAPS")
sleep 0.5
rj_as alice stop "$ID" >/dev/null
expect_match "a Stop without --signal sends the server's --stop-signal (QUIT)" '"exit_code": *3' "$(rj_as alice status -o json "$ID")"
ID=$(rj_as alice start /bin/sh -c "$TRAPS")
sleep 0.5
rj_as alice stop --signal INT "$ID" >/dev/null
expect_match "a Stop naming its signal sends that one (INT)" '"exit_code": *2' "$(rj_as alice status -o json "$ID")"

# At shutdown too: the record on disk says how the job ended.
ID=$(rj_as alice start /bin/sh -c "$TRAPS")
sleep 0.5
rj_server_stop
expect_match "shutdown stops running jobs with --stop-signal" 'exit_code=3' "$(cat "$RJ_STATE/$ID/status")"
t_done
