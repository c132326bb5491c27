#!/usr/bin/env bash
# Interop tier: a Node.js client built on @grpc/grpc-js and @grpc/proto-loader (pinned in
# package.json + package-lock.json, installed here with `npm ci`) talks to a real
# `runjob serve` on 127.0.0.1 over mutual TLS 1.3 and drives every RPC: Ping, Start, Stream
# (received in full, checked by sha256 against a local `seq`), Status, List, Stop, the error
# codes (NOT_FOUND for another user's job, INVALID_ARGUMENT, UNIMPLEMENTED) and the TLS
# refusals (TLS 1.2-only client, no certificate, another CA). See interop.js. Then
# bad_input.js sends every RPC every kind of invalid field as raw protobuf bytes (non-UTF-8,
# NUL, unknown enum values, 2^64-1, garbage, over 1 MiB) and checks code, words and that the
# server still answers Ping after each.
#
# Needs root (the server runs its jobs), node (>= 18) and npm: on Debian, `apt-get install
# nodejs npm` (install.sh does it), and the npm registry (or npm's cache) for `npm ci`. Without
# any of these the tier is skipped, with the reason on a SKIP line; an `npm ci` that fails for
# another reason is a failure.
# Environment: RUNJOB_BIN (default bin/runjob). Prints PASS:/FAIL: lines; exits non-zero on
# any failure.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
HERE=test/interop

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: interop: the whole tier -- needs root (its jobs run on a real server: namespaces, cgroups)"
    exit 0
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: interop: the whole tier -- $tool is not installed (apt-get install -y nodejs npm)"
        exit 0
    fi
done
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
case $node_major in '' | *[!0-9]*) node_major=0 ;; esac
if [ "$node_major" -lt 18 ]; then
    echo "SKIP: interop: the whole tier -- node $(node --version 2>/dev/null) is older than the 18 @grpc/grpc-js needs"
    exit 0
fi
ok "interop: node $(node --version) and npm $(npm --version 2>/dev/null) present"

# npm ci: exactly the locked versions, no install scripts (none is needed), quiet.
npm_log=$(mktemp /tmp/runjob-npm.XXXXXX)
if (cd "$HERE" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$npm_log" 2>&1; then
    ok "interop: npm ci (locked @grpc/grpc-js, @grpc/proto-loader)"
elif grep -qE 'code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)|network request to .* failed' "$npm_log"; then
    # No registry to fetch the locked packages from (an offline host, no cache): nothing to run.
    echo "SKIP: interop: the whole tier -- npm ci cannot reach the registry: $(grep -m1 -oE 'code E[A-Z_]+' "$npm_log")"
    rm -f "$npm_log"
    exit 0
else
    fail "interop: npm ci" "see below"
    sed 's/^/#   /' "$npm_log" | tail -20
    rm -f "$npm_log"
    exit 1
fi
rm -f "$npm_log"
expect_eq "interop: @grpc/grpc-js version is the locked one" \
    "$(cd "$HERE" && node -p 'require("./package-lock.json").packages["node_modules/@grpc/grpc-js"].version' 2>&1)" \
    "$(cd "$HERE" && node -p 'require("@grpc/grpc-js/package.json").version' 2>&1)"

rj_setup
# Certificates from another CA (same user name): must be refused.
RJ_ROGUE=$RJ_TMP/rogue
"$RUNJOB" certs -q --out "$RJ_ROGUE" --user alice >/dev/null ||
    fail "interop: runjob certs for a second CA"
rj_server_start
ok "interop: runjob serve up on 127.0.0.1:$RJ_PORT"

start=$SECONDS
RJ_PORT=$RJ_PORT RJ_CERTS=$RJ_CERTS RJ_ROGUE=$RJ_ROGUE RJ_PROTO=$PWD/proto/runjob.proto \
    timeout 180 node "$HERE/interop.js" 2>&1 | tee "$RJ_TMP/interop.out"
rc=${PIPESTATUS[0]}
echo "# interop.js took $((SECONDS - start)) s"
if [ "$rc" -eq 124 ]; then
    fail "interop: interop.js finished in time" "killed after 180 s"
elif [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$RJ_TMP/interop.out"; then
    fail "interop: interop.js ran" "exited $rc without a FAIL line"
elif [ "$rc" -ne 0 ]; then
    T_FAILED=$((T_FAILED + 1)) # its FAIL lines are counted by the tier runner; keep the exit status honest
elif ! grep -q '^PASS: ' "$RJ_TMP/interop.out"; then
    fail "interop: interop.js ran" "no PASS line at all"
fi

# Bad input at the edges: every RPC with every invalid field, hand-encoded (bad_input.js).
# The server's default --max-cpu is the number of online CPUs, in millis.
start=$SECONDS
RJ_PORT=$RJ_PORT RJ_CERTS=$RJ_CERTS RJ_MAX_CPU_MILLIS=$(($(getconf _NPROCESSORS_ONLN) * 1000)) \
    timeout 300 node "$HERE/bad_input.js" 2>&1 | tee "$RJ_TMP/bad_input.out"
rc=${PIPESTATUS[0]}
echo "# bad_input.js took $((SECONDS - start)) s"
if [ "$rc" -eq 124 ]; then
    fail "interop: bad_input.js finished in time" "killed after 300 s"
elif [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$RJ_TMP/bad_input.out"; then
    fail "interop: bad_input.js ran" "exited $rc without a FAIL line"
elif [ "$rc" -ne 0 ]; then
    T_FAILED=$((T_FAILED + 1))
elif ! grep -q '^PASS: ' "$RJ_TMP/bad_input.out"; then
    fail "interop: bad_input.js ran" "no PASS line at all"
fi

# The published second design's service, from a client built from its proto alone.
start=$SECONDS
RJ_PORT=$RJ_PORT RJ_CERTS=$RJ_CERTS RJ_ROGUE=$RJ_ROGUE RJ_JOBMANAGER_PROTO=$PWD/proto/jobmanager.proto \
    timeout 120 node "$HERE/jobmanager.js" 2>&1 | tee "$RJ_TMP/jobmanager.out"
rc=${PIPESTATUS[0]}
echo "# jobmanager.js took $((SECONDS - start)) s"
if [ "$rc" -eq 124 ]; then
    fail "interop: jobmanager.js finished in time" "killed after 120 s"
elif [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$RJ_TMP/jobmanager.out"; then
    fail "interop: jobmanager.js ran" "exited $rc without a FAIL line"
elif [ "$rc" -ne 0 ]; then
    T_FAILED=$((T_FAILED + 1))
elif ! grep -q '^PASS: ' "$RJ_TMP/jobmanager.out"; then
    fail "interop: jobmanager.js ran" "no PASS line at all"
fi

# The server survived the lot and still answers the C client.
if kill -0 "$RJ_SERVER_PID" 2>/dev/null && rj_as alice ping >/dev/null 2>&1; then
    ok "interop: server still alive and answering after the Node client"
else
    fail "interop: server still alive and answering after the Node client" "log tail:"
    tail -20 "$RJ_SERVER_LOG" | sed 's/^/#   /'
fi

# The server stops cleanly on SIGTERM (exit 0), and nothing in its log comes from a
# sanitizer (RUNJOB_BIN may be an ASan/UBSan build).
# Last: health.js stops the server itself (SIGTERM while a Watch is open).
RJ_PORT=$RJ_PORT RJ_CERTS=$RJ_CERTS RJ_HEALTH_PROTO=$PWD/proto/health.proto RJ_SERVER_PID=$RJ_SERVER_PID \
    timeout 60 node "$HERE/health.js" 2>&1 | tee "$RJ_TMP/health.out"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$RJ_TMP/health.out"; then
    fail "interop: health.js ran" "exited $rc without a FAIL line"
elif [ "$rc" -ne 0 ]; then
    T_FAILED=$((T_FAILED + 1))
fi

rj_server_stop_clean "$RJ_SERVER_PID" "interop: server"
if grep -qE 'Sanitizer|runtime error:|LeakSanitizer' "$RJ_SERVER_LOG"; then
    fail "interop: no sanitizer report in the server log"
    grep -E -A15 'Sanitizer|runtime error:' "$RJ_SERVER_LOG" | head -40 | sed 's/^/#   /'
else
    ok "interop: no sanitizer report in the server log"
fi
t_done
