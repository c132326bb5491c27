#!/usr/bin/env bash
# --audit-log and logrotate: SIGHUP reopens the file by its path, the server keeps serving, and
# no audit line is lost or split between the two files.
. "$(dirname "$0")/../lib.sh"
rj_setup
AUDIT=$RJ_TMP/audit.log
rj_server_start --audit-log "$AUDIT"

rj_as alice ping >/dev/null
expect_eq "a ping leaves its audit line" 2 "$(grep -c 'method=Ping' "$AUDIT")" # rj_server_start's ping too
mv "$AUDIT" "$AUDIT.1"
kill -HUP "$RJ_SERVER_PID"
for _ in $(seq 50); do [ -f "$AUDIT" ] && break; sleep 0.1; done
check "SIGHUP makes the audit log again at its path" test -f "$AUDIT"
rj_as bob ping >/dev/null
expect_eq "the next call's line goes to the new file" 1 "$(grep -c 'cn="bob"' "$AUDIT")"
expect_eq "the old file keeps the earlier lines only" 0 "$(grep -c 'cn="bob"' "$AUDIT.1")"
check "the server still runs after SIGHUP" kill -0 "$RJ_SERVER_PID"
expect_match "the server logs the reopen" "audit log '$AUDIT' reopened" "$(cat "$RJ_SERVER_LOG")"

# A path that cannot be opened any more: the file in use stays in use.
mv "$AUDIT" "$AUDIT.2"
mkdir "$AUDIT"
kill -HUP "$RJ_SERVER_PID"
for _ in $(seq 50); do grep -q "reopening the audit log" "$RJ_SERVER_LOG" && break; sleep 0.1; done
expect_match "a failed reopen is logged" "reopening the audit log '$AUDIT' \(keeping the old one\)" "$(cat "$RJ_SERVER_LOG")"
rj_as alice status 3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f >/dev/null 2>&1
check "the server still runs" kill -0 "$RJ_SERVER_PID"
expect_eq "and audits into the file it had" 1 "$(grep -c 'method=Status' "$AUDIT.2")"
rj_server_stop
t_done
