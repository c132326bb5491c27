#!/bin/bash
# Server TLS: TLS 1.2 refused and TLS 1.3 accepted at the handshake (a connection counts as
# accepted only when the server answers the HTTP/2 preface with a SETTINGS frame), for the
# static binary and the ASan (dynamic, interposer) build; no client certificate, a certificate
# from another CA and a certificate without CN are refused.
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

check_binary() {
    local label=$1 out
    unset RJ_PORT
    rj_server_start
    expect_eq "$label: TLS 1.3 with a client certificate is accepted" ACCEPTED "$(h2_probe -tls1_3 "${ALICE[@]}")"
    expect_eq "$label: TLS 1.2 is refused" REFUSED "$(h2_probe -tls1_2 "${ALICE[@]}")"
    expect_eq "$label: TLS 1.1 is refused" REFUSED "$(h2_probe -tls1_1 "${ALICE[@]}")"
    expect_eq "$label: TLS 1.3 without a client certificate is refused" REFUSED "$(h2_probe -tls1_3)"
    expect_eq "$label: a certificate from another CA is refused" REFUSED \
        "$(h2_probe -tls1_3 -cert "$RJ_TMP/rogue-cert.pem" -key "$RJ_TMP/rogue-key.pem")"
    out=$(openssl s_client -tls1_3 -connect "127.0.0.1:$RJ_PORT" -servername localhost "${ALICE[@]}" \
        -CAfile "$RJ_CERTS/root-ca-cert.pem" </dev/null 2>/dev/null | grep -E '^(New|Cipher is|    Cipher)')
    expect_match "$label: cipher is a TLS 1.3 suite" 'TLS_AES_256_GCM_SHA384|TLS_AES_128_GCM_SHA256|TLS_CHACHA20_POLY1305_SHA256' "$out"
    out=$(rj_as nocn ping 2>&1)
    expect_match "$label: a certificate without CN gets UNAUTHENTICATED" 'UNAUTHENTICATED' "$out"
    out=$(rj_as alice ping 2>&1)
    expect_match "$label: alice pings" 'alice' "$out"
    rj_server_stop
    expect_eq "$label: server exits 0 on SIGTERM" 0 "$?"
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
