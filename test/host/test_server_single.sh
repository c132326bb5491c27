#!/usr/bin/env bash
# One server per port and per state directory: a second `runjob serve` on either refuses to
# start with one line saying why, and the first keeps serving with its jobs and spares intact.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

# second_serve PORT STATE: runs a second server; sets RC and ERR (its stderr).
second_serve() {
    ERR=$(cd "$RJ_TMP" && timeout 20 "$RUNJOB" serve -H 127.0.0.1 -P "$1" --state-dir "$2" \
        --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
        --server-cert-path "$RJ_CERTS/server-cert.pem" \
        --server-key-path "$RJ_CERTS/server-key.pem" 2>&1 >/dev/null)
    RC=$?
}

spares() { find "$RJ_STATE" -mindepth 1 -maxdepth 1 -type d | sort; }
for _ in $(seq 50); do [ "$(spares | wc -l)" -ge 2 ] && break; sleep 0.1; done
BEFORE=$(spares)

second_serve "$RJ_PORT" "$RJ_TMP/other-state"
expect_eq "same port: the second server exits 1" 1 "$RC"
expect_match "same port: it says the port is taken" "cannot listen on 127\.0\.0\.1:$RJ_PORT: the port is taken" "$ERR"
expect_eq "same port: in one line" 1 "$(printf '%s\n' "$ERR" | wc -l)"

OTHER=$(rj_free_port)
second_serve "$OTHER" "$RJ_STATE"
expect_eq "same state directory: the second server exits 1" 1 "$RC"
expect_match "same state directory: it names the holder's pid" "locked by pid $RJ_SERVER_PID" "$ERR"
expect_eq "same state directory: in one line" 1 "$(printf '%s\n' "$ERR" | wc -l)"
if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$OTHER" 2>/dev/null; then
    fail "same state directory: nothing listens on its port afterwards"
else
    ok "same state directory: nothing listens on its port afterwards"
fi

# The lock file removed (by hand, by a clean-up script) does not open the directory to another.
rm -f "$RJ_STATE/lock"
second_serve "$(rj_free_port)" "$RJ_STATE"
expect_eq "same state directory, its lock file removed: the second server exits 1" 1 "$RC"
expect_match "same state directory, its lock file removed: it says the directory is locked" \
    "it is locked by pid" "$ERR"

expect_eq "the first server's spares are untouched" "$BEFORE" "$(spares)"
ID=$(rj_as alice start /bin/echo still here)
expect_match "the first server still starts jobs" '^[0-9a-f-]{36}$' "$ID"
expect_eq "and streams their output" "still here" "$(rj_as alice stream "$ID" 2>&1)"

# The lock goes with its holder: a restart on the same directory and port starts.
rj_server_stop
RJ_SERVER_PID=
rj_server_start
out=$(rj_as alice status "$ID" 2>&1)
expect_match "after the first server exits, a new one takes the directory" "$ID" "$out"

# A server that stops closes its clients' connections first, which leaves them in TIME-WAIT on
# its port for a minute: that is no other server, and a restart on the port starts at once.
# (Made here by a listener on the port that closes an accepted connection first.)
rj_server_stop
python3 - "$RJ_PORT" <<'PY' 2>/dev/null
import socket, sys, time
port = int(sys.argv[1])
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("::ffff:127.0.0.1", port))
l.listen(1)
c = socket.create_connection(("127.0.0.1", port))
a, _ = l.accept()
a.close()
time.sleep(0.1)
c.close()
l.close()
PY
if [ -z "$(ss -Htan state time-wait "( sport = :$RJ_PORT )" 2>/dev/null)" ]; then
    echo "SKIP: restart beside TIME-WAIT connections -- none was left on the port here"
else
    RJ_SERVER_PID=
    rj_server_start # the script fails here, with the server's log, if it does not come up
    ok "a restart beside TIME-WAIT connections on its port starts"
fi
t_done
