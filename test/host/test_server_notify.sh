#!/usr/bin/env bash
# Type=notify: with $NOTIFY_SOCKET set, the server sends READY=1 once it serves and
# STOPPING=1 when it shuts down, as sd_notify(3) does.
. "$(dirname "$0")/../lib.sh"
rj_setup
SOCK=$RJ_TMP/notify.sock
python3 - "$SOCK" >"$RJ_TMP/notify.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    for _ in range(2):
        print(s.recv(256).decode(), flush=True)
except socket.timeout:
    pass
PY
LISTENER=$!
RJ_PIDS+=("$LISTENER")
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$SOCK rj_server_start
for _ in $(seq 50); do grep -q READY=1 "$RJ_TMP/notify.out" && break; sleep 0.1; done
expect_eq "READY=1 once the server answers" "READY=1" "$(head -1 "$RJ_TMP/notify.out")"
rj_server_stop
wait "$LISTENER"
expect_eq "STOPPING=1 at shutdown" "STOPPING=1" "$(sed -n 2p "$RJ_TMP/notify.out")"
t_done
