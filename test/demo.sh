#!/usr/bin/env bash
# `make demo`: runjob working end to end on this machine. Fresh certificates and state go to a
# temporary folder; a server runs on a free localhost port; everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNJOB=${RUNJOB_BIN:-$PWD/bin/runjob}
TMP=$(mktemp -d /tmp/runjob-demo.XXXXXX)
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
    printf '$ %s\n' "$*"
    "$@"
}

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: the server creates namespaces and cgroups: run as root" >&2
    exit 1
fi

step "version"
show "$RUNJOB" --version

step "certificates (CA, server, alice, bob, administrator) in $TMP/certs"
show "$RUNJOB" certs --out "$TMP/certs"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
step "server on 127.0.0.1:$PORT (log in $TMP/server.log)"
printf '$ %s\n' "runjob serve -H 127.0.0.1 -P $PORT --state-dir $TMP/state --client-pem-path ... &"
"$RUNJOB" serve -H 127.0.0.1 -P "$PORT" --state-dir "$TMP/state" \
    --client-pem-path "$TMP/certs/ca-clients-bundle.pem" \
    --server-cert-path "$TMP/certs/server-cert.pem" \
    --server-key-path "$TMP/certs/server-key.pem" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

# The client reads its connection settings from the environment as well as from flags.
export RUNJOB_SERVER_HOST=127.0.0.1 RUNJOB_SERVER_PORT=$PORT
export RUNJOB_CA_CERT_PATH=$TMP/certs/root-ca-cert.pem
export RUNJOB_CLIENT_CERT_PATH=$TMP/certs/alice-cert.pem
export RUNJOB_CLIENT_KEY_PATH=$TMP/certs/alice-key.pem
for _ in $(seq 100); do
    "$RUNJOB" ping >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log"; exit 1; }
    sleep 0.1
done
show "$RUNJOB" ping

step "run a job: its stdout and stderr stream back live, its exit code is ours"
set +e
show "$RUNJOB" run -j demo --memory 64M --cpu 500 /bin/sh -c \
    'echo "hello from $(hostname), pid $$ in its own namespace"; echo "a line on stderr" >&2; ls /proc | grep -c "^[0-9]" | sed "s/^/processes visible: /"; exit 3'
rc=$?
set -e
echo "(exit status $rc)"

step "start a job in the background, list and status"
ID=$("$RUNJOB" start -j counter /bin/sh -c 'for i in 1 2 3; do echo "tick $i"; sleep 0.2; done')
echo "started $ID"
show "$RUNJOB" list
show "$RUNJOB" stream "$ID"
show "$RUNJOB" status "$ID"

step "stream the finished job again, from the first byte"
show "$RUNJOB" stream "$ID"

step "stop a long job (SIGTERM, then the whole cgroup after the grace)"
LONG=$("$RUNJOB" start /bin/sleep 600)
show "$RUNJOB" stop --grace 2s "$LONG"

step "stop the server"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=
echo "server exited cleanly; demo done"
