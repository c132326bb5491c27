#!/usr/bin/env bash
# An unauthenticated connection flood cannot wedge the server. Run with 1024 open files, it
# takes 1100 plain TCP connections that never start TLS, held for up to 25 s: a real client gets
# through within 15 s while they are held (the handshake deadline gives their fds back; the
# accept guard keeps the listener alive meanwhile) and within 5 s once they are gone. The flood
# ends as soon as that first client got through (no need to sit out the rest of the 25 s).
. "$(dirname "$0")/../lib.sh"
rj_setup
RJ_PORT=$(rj_free_port)
RJ_STATE=$RJ_TMP/state
RJ_SERVER_LOG=$RJ_TMP/server.log
prlimit --nofile=1024:1024 "$RUNJOB" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$RJ_STATE" \
    --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
    --server-cert-path "$RJ_CERTS/server-cert.pem" \
    --server-key-path "$RJ_CERTS/server-key.pem" >>"$RJ_SERVER_LOG" 2>&1 &
RJ_SERVER_PID=$!
RJ_PIDS+=("$RJ_SERVER_PID")
for _ in $(seq 100); do rj_as alice ping >/dev/null 2>&1 && break; sleep 0.1; done
check "the server serves with 1024 open files" rj_as alice ping

# until_ping LIMIT: seconds until alice's ping first succeeds (LIMIT+ if never).
until_ping() {
    local start=$SECONDS
    while [ $((SECONDS - start)) -lt "$1" ]; do
        timeout 5 "$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" -u alice --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
            --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" \
            >/dev/null 2>&1 && { echo $((SECONDS - start)); return; }
        sleep 0.5
    done
    echo "$1+"
}

fds() { ls "/proc/$RJ_SERVER_PID/fd" 2>/dev/null | wc -l; }
IDLE_FDS=$(fds)
rj_flood 1100 25 "$RJ_TMP/flood.stop" >"$RJ_TMP/flood.out" &
FLOOD=$!
RJ_PIDS+=("$FLOOD")
for _ in $(seq 50); do grep -q 'connections open' "$RJ_TMP/flood.out" && break; sleep 0.1; done
sleep 1
PEAK_FDS=$(fds)
T1=$(until_ping 15)
expect_match "while 1100 idle connections are held, a real client gets through within 15 s ($T1 s)" '^[0-9]+$' "$T1"
touch "$RJ_TMP/flood.stop"
wait "$FLOOD"
T2=$(until_ping 5)
expect_match "after the flood, a real client gets through within 5 s ($T2 s)" '^[0-9]+$' "$T2"
check "the server still runs" kill -0 "$RJ_SERVER_PID"
ID=$(rj_as alice start /bin/echo after the flood)
expect_eq "and starts and streams jobs" "after the flood" "$(rj_as alice stream "$ID" 2>&1)"
expect_match "the server says it shed connections" "connection flood: [0-9]+ connection\(s\) closed unserved" "$(cat "$RJ_SERVER_LOG")"
if grep -q 'Failed accept4' "$RJ_SERVER_LOG"; then
    fail "gRPC's listener never fails its accept4" "$(grep -m1 'Failed accept4' "$RJ_SERVER_LOG")"
else
    ok "gRPC's listener never fails its accept4"
fi
sleep 1
echo "# flood of 1100 idle connections with 1024 open files: server fds $IDLE_FDS idle, $PEAK_FDS during, $(fds) after; first client in ${T1} s during, ${T2} s after"
rj_server_stop
t_done
