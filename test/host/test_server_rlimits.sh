#!/bin/bash
# A job's resource limits are its own, not the server's: open files 1024 soft / 4096 hard, no
# core files. The server here runs with both raised (open files 20000, core unlimited), as an
# admin's shell or unit may leave them and as serve raises its own open-files limit. A second
# server runs under a hard open-files limit below the job's: its jobs get that one, the admin's
# ceiling, and still start.
. "$(dirname "$0")/../lib.sh"
rj_setup

PROBE='ulimit -n; ulimit -Hn; ulimit -c; ulimit -Hc'
WANT=$(printf '1024\n4096\n0\n0')

ulimit -n 20000 && ulimit -c unlimited ||
    { fail "raise this shell's limits for the server" "ulimit refused"; t_done; exit; }
rj_server_start --allow-host-network
# The core file soft limit is left out: ASan lowers its own to 0 at start-up.
lim="$(awk '/^Max open files/ {print $4 "/" $5}' "/proc/$RJ_SERVER_PID/limits")"
lim+=" $(awk '/^Max core file size/ {print $6}' "/proc/$RJ_SERVER_PID/limits")"
expect_eq "the server's own limits are raised (open files, core hard)" "20000/20000 unlimited" "$lim"

expect_eq "a job gets 1024/4096 open files and no core files" "$WANT" "$(rj run /bin/sh -c "$PROBE" 2>&1)"
expect_eq "a job with the host's network (an exec'd shim) gets the same" "$WANT" \
    "$(rj run --network host /bin/sh -c "$PROBE" 2>&1)"
expect_eq "a job may raise its soft open-files limit up to 4096" "4096" \
    "$(rj run /bin/sh -c 'ulimit -Sn 4096 && ulimit -n' 2>&1)"
out=$(rj run /bin/sh -c 'ulimit -Hn 4097 2>/dev/null && echo raised; ulimit -Hc unlimited 2>/dev/null && echo core; ulimit -Hn' 2>&1)
expect_eq "a job cannot raise either hard limit" "4096" "$out"
expect_eq "a job's children inherit the limits" "$WANT" \
    "$(rj run /bin/sh -c "/bin/sh -c '$PROBE'" 2>&1)"
rj_server_stop

# Under a server whose own hard limit is lower, a job gets that one: never more than the server.
ulimit -n 2048 && ulimit -c 0 ||
    { fail "lower this shell's limits for the second server" "ulimit refused"; t_done; exit; }
unset RJ_PORT
RJ_STATE=$RJ_TMP/state-low
rj_server_start
lim=$(awk '/^Max open files/ {print $4 "/" $5}' "/proc/$RJ_SERVER_PID/limits")
expect_eq "the second server runs under a hard open-files limit of 2048" "2048/2048" "$lim"
expect_eq "its jobs get 1024/2048 open files and no core files" "$(printf '1024\n2048\n0\n0')" \
    "$(rj run /bin/sh -c "$PROBE" 2>&1)"
rj_server_stop
t_done
