#!/bin/bash
# Server TLS: TLS 1.2 refused and TLS 1.3 accepted at the handshake (a connection counts as
# accepted only when the server answers the HTTP/2 preface with a SETTINGS frame), for the
# static binary and the ASan (dynamic, interposer) build; no client certificate, a certificate
# from another CA, an expired one and one without CN are refused. Each refused handshake leaves
# one line in the server's log with the client's address (the very port it connected from) and
# the reason, instead of gRPC's own line; a burst of them is rate-limited, every one counted.
. "$(dirname "$0")/../lib.sh"
# Every check here goes through the openssl command (s_client, and the test certificates).
if ! command -v openssl >/dev/null; then
    echo "SKIP: server TLS checks -- the openssl command is not installed (apt-get install openssl)"
    exit 0
fi
rj_setup

# h2_probe VERSION_FLAG [s_client cert args...]: prints ACCEPTED or REFUSED.
h2_probe() {
    local v=$1 hex
    shift
    hex=$( (printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00'; sleep 1) |
        timeout 10 openssl s_client "$v" -alpn h2 -connect "127.0.0.1:$RJ_PORT" -servername localhost \
            -CAfile "$RJ_CERTS/root-ca-cert.pem" "$@" -quiet 2>/dev/null | head -c 9 | od -An -tx1 | tr -d ' \n')
    # A frame header: 3 bytes length, then type 0x04 = SETTINGS.
    if [ "${hex:6:2}" = "04" ]; then echo ACCEPTED; else echo REFUSED; fi
}

ALICE=(-cert "$RJ_CERTS/alice-cert.pem" -key "$RJ_CERTS/alice-key.pem")

# A certificate from another CA (CN=alice), and one from the real CA without a CN.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -days 1 -subj /CN=alice \
    -keyout "$RJ_TMP/rogue-key.pem" -out "$RJ_TMP/rogue-cert.pem" >/dev/null 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -subj /O=nocn \
    -keyout "$RJ_CERTS/nocn-key.pem" -out "$RJ_TMP/nocn.csr" >/dev/null 2>&1
printf 'extendedKeyUsage=clientAuth\n' >"$RJ_TMP/ext"
openssl x509 -req -in "$RJ_TMP/nocn.csr" -CA "$RJ_CERTS/root-ca-cert.pem" \
    -CAkey "$RJ_CERTS/root-ca-key.pem" -CAcreateserial -days 1 -extfile "$RJ_TMP/ext" \
    -out "$RJ_CERTS/nocn-cert.pem" >/dev/null 2>&1

# An expired client certificate from the real CA (CN old), and one from another CA made by
# runjob certs (CN eve, its CA certificate not in the server's bundle).
"$RUNJOB" certs -q -o "$RJ_CERTS" --clients-only --user old --expired ||
    fail "runjob certs --expired" "exit $?"
"$RUNJOB" certs -q -o "$RJ_TMP/other" --user eve || fail "runjob certs (another CA)" "exit $?"
OLD_END=$(date -u -d "$(openssl x509 -enddate -noout -in "$RJ_CERTS/old-cert.pem" | cut -d= -f2)" +%F)

# port_probe CERT KEY: a TLS 1.3 handshake with that client certificate; prints the local port
# it connected from.
port_probe() {
    python3 - "$RJ_PORT" "$1" "$2" "$RJ_CERTS/root-ca-cert.pem" <<'PY'
import socket, ssl, sys
port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2"])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
print(s.getsockname()[1], flush=True)
try:
    # TLS 1.3: the client is done before the server has checked its certificate; the server's
    # refusal is the connection closing.
    ctx.wrap_socket(s, server_hostname="localhost").recv(1)
except (ssl.SSLError, OSError):
    pass
PY
}

# hello_burst N: N connections, one after the other, that each send a TLS 1.2 ClientHello and
# wait for the server to close them; prints how many it closed.
hello_burst() {
    python3 - "$RJ_PORT" "$1" <<'PY'
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
try:
    ctx.wrap_bio(incoming, outgoing).do_handshake()
except ssl.SSLWantReadError:
    pass
hello, closed = outgoing.read(), 0
for _ in range(n):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(hello)
        try:
            while s.recv(4096):
                pass
            closed += 1
        except OSError:
            closed += 1
print(closed)
PY
}

log_mark() { wc -l <"$RJ_SERVER_LOG"; }
# refusal_line MARK: the first "tls: refused handshake" line logged after line MARK (waits up to
# 3 s for it).
refusal_line() {
    local line
    for _ in $(seq 30); do
        line=$(tail -n +"$(($1 + 1))" "$RJ_SERVER_LOG" | grep -a -m1 'tls: refused handshake')
        [ -n "$line" ] && break
        sleep 0.1
    done
    echo "$line"
}
# expect_refused LABEL WHAT REASON_REGEX S_CLIENT_ARGS...: the probe is refused, and the server
# logs it from 127.0.0.1 with the reason.
expect_refused() {
    local label=$1 what=$2 re=$3 mark
    shift 3
    mark=$(log_mark)
    expect_eq "$label: $what is refused" REFUSED "$(h2_probe "$@")"
    expect_match "$label: $what: the server logs the address and why" \
        "tls: refused handshake from 127\.0\.0\.1:[0-9]+: $re\$" "$(refusal_line "$mark")"
}

check_binary() {
    local label=$1 out mark port lines hidden t0 took
    unset RJ_PORT
    rj_server_start
    expect_eq "$label: TLS 1.3 with a client certificate is accepted" ACCEPTED "$(h2_probe -tls1_3 "${ALICE[@]}")"
    expect_refused "$label" "TLS 1.2" 'protocol version TLS 1\.2 refused' -tls1_2 "${ALICE[@]}"
    expect_refused "$label" "TLS 1.1" 'protocol version TLS 1\.1 refused' -tls1_1 "${ALICE[@]}" \
        -cipher 'DEFAULT:@SECLEVEL=0'
    expect_refused "$label" "TLS 1.3 without a client certificate" 'no client certificate' -tls1_3
    expect_refused "$label" "a self-signed certificate" \
        "certificate signed by an unknown CA \(CN 'alice', issuer CN 'alice'\)" \
        -tls1_3 -cert "$RJ_TMP/rogue-cert.pem" -key "$RJ_TMP/rogue-key.pem"
    expect_refused "$label" "a certificate from another CA" \
        "certificate signed by an unknown CA \(CN 'eve', issuer CN '[^']+'\)" \
        -tls1_3 -cert "$RJ_TMP/other/eve-cert.pem" -key "$RJ_TMP/other/eve-key.pem"
    mark=$(log_mark)
    port=$(port_probe "$RJ_CERTS/old-cert.pem" "$RJ_CERTS/old-key.pem")
    expect_match "$label: an expired certificate is logged with the client's own port and its end" \
        "tls: refused handshake from 127\.0\.0\.1:$port: client certificate expired \(CN 'old', expired $OLD_END\)\$" \
        "$(refusal_line "$mark")"
    out=$(openssl s_client -tls1_3 -connect "127.0.0.1:$RJ_PORT" -servername localhost "${ALICE[@]}" \
        -CAfile "$RJ_CERTS/root-ca-cert.pem" </dev/null 2>/dev/null | grep -E '^(New|Cipher is|    Cipher)')
    expect_match "$label: cipher is a TLS 1.3 suite" 'TLS_AES_256_GCM_SHA384|TLS_AES_128_GCM_SHA256|TLS_CHACHA20_POLY1305_SHA256' "$out"
    out=$(rj_as nocn ping 2>&1)
    expect_match "$label: a certificate without CN gets UNAUTHENTICATED" 'UNAUTHENTICATED' "$out"
    out=$(rj_as alice ping 2>&1)
    expect_match "$label: alice pings" 'alice' "$out"
    if grep -aq 'Handshake failed' "$RJ_SERVER_LOG"; then
        fail "$label: gRPC's own line for a failed handshake is not in the log" \
            "$(grep -a -m1 'Handshake failed' "$RJ_SERVER_LOG")"
    else
        ok "$label: gRPC's own line for a failed handshake is not in the log"
    fi
    # 200 refusals as fast as the server takes them: 10 lines a second at most, and the rest
    # counted in "N more ... not logged" lines (the last one at shutdown).
    mark=$(log_mark)
    t0=$SECONDS
    expect_eq "$label: a burst of 200 TLS 1.2 hellos is refused" 200 "$(hello_burst 200)"
    took=$((SECONDS - t0 + 1))
    rj_server_stop
    expect_eq "$label: server exits 0 on SIGTERM" 0 "$?"
    lines=$(tail -n +"$((mark + 1))" "$RJ_SERVER_LOG" | grep -ac 'tls: refused handshake from 127\.0\.0\.1:[0-9]*: protocol version TLS 1\.2 refused$')
    hidden=$(tail -n +"$((mark + 1))" "$RJ_SERVER_LOG" |
        sed -nE 's/.*tls: ([0-9]+) more refused handshake\(s\) not logged.*/\1/p' |
        awk '{ n += $1 } END { print n + 0 }')
    echo "# $label: burst of 200 in ~$took s: $lines lines, $hidden counted only"
    if [ "$lines" -ge 1 ] && [ "$lines" -le $((10 * (took + 1))) ]; then
        ok "$label: the burst's lines are rate-limited (10 a second)"
    else
        fail "$label: the burst's lines are rate-limited (10 a second)" "$lines lines in ~$took s"
    fi
    expect_eq "$label: every refusal of the burst is logged or counted" 200 "$((lines + hidden))"
}

check_binary "$(basename "$RUNJOB")${RJ_SANITIZER:+-$RJ_SANITIZER}"
# Outside the sanitizer tiers, also the ASan build: its TLS 1.3 enforcement is the dynamic
# interposer, not --wrap, and must hold just the same. Where the tiers build it: $BUILD/asan.
if [ -z "${RJ_SANITIZER:-}" ]; then
    asan_bin=${BUILD:-build}/asan/runjob
    case $asan_bin in /*) ;; *) asan_bin=$RJ_ROOT/$asan_bin ;; esac
    if [ -x "$asan_bin" ]; then
        RUNJOB=$asan_bin
        RJ_STATE=$RJ_TMP/state-asan
        check_binary asan
    else
        echo "SKIP: asan build -- $asan_bin missing (make asan)"
    fi
fi
t_done
