#!/usr/bin/env bash
# TLS audit tier: probes a real `runjob serve` on 127.0.0.1 from outside.
#
#  1. testssl.sh (Debian package testssl.sh) with a valid client certificate: protocols (-p),
#     ciphers per protocol (-E) and vulnerabilities (-U); check_testssl.py judges the JSON:
#     only TLS 1.3, exactly the three allowed suites, nothing flagged.
#  2. openssl s_client with the HTTP/2 preface: a connection counts as accepted only when
#     the server answers with an HTTP/2 SETTINGS frame (s_client prints "New, TLSv1.3" even
#     when the server aborts right after the client's Finished). TLS 1.3 with a good client
#     certificate is accepted; TLS 1.2 is refused with a protocol_version alert, probed
#     against both servers (the main one's `runjob certs` certificates are P-256 too; the second
#     one's server certificate is made by openssl), so that nothing but the TLS 1.3 enforcement
#     can refuse it (with P-384 certificates TLS 1.2 fails anyway, as gRPC offers only P-256 to
#     TLS 1.2 peers); no client certificate, a
#     certificate from another CA and an expired one are refused.
#  3. The runjob client: a good certificate pings; expired, other-CA and CN-less
#     certificates fail (the CN-less one may pass the TLS handshake: the server must then
#     answer UNAUTHENTICATED).
#
# Needs: testssl.sh (Debian package; apt-get install -y testssl.sh, done here if missing and
# root), openssl, python3, timeout. Without the openssl command the tier is skipped (everything
# in it drives openssl); without testssl.sh (not installed and not installable here: no root, no
# apt, no network) part 1 is skipped; either says so on a SKIP line.
# Environment: RUNJOB_BIN (default bin/runjob), TESTSSL (default: testssl on PATH).
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
HERE=$PWD/test/tls

TESTSSL=${TESTSSL:-$(command -v testssl || command -v testssl.sh)}
# Debian's testssl.sh package; installed here when missing and we may (install.sh installs it too).
if [ -z "$TESTSSL" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing testssl.sh with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q testssl.sh >/dev/null 2>&1 ||
        { timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 300 apt-get install -y -q testssl.sh >/dev/null 2>&1; }
    TESTSSL=$(command -v testssl || command -v testssl.sh)
fi
if ! command -v openssl >/dev/null; then
    echo "SKIP: tls: the whole audit -- the openssl command is not installed (apt-get install openssl)"
    exit 0
fi
for tool in python3 timeout; do
    command -v "$tool" >/dev/null || { fail "tls: $tool installed"; exit 1; }
done

rj_setup
C=$RJ_CERTS
CA=$C/root-ca-cert.pem

# ---- test certificates ---------------------------------------------------------------------

# ossl_client DIR NAME SUBJ DAYS: a P-384 client certificate NAME-cert.pem signed by DIR's CA
# (the fallback when `runjob certs` lacks a test flag; DAYS -1 makes an expired one).
ossl_client() {
    local dir=$1 name=$2 subj=$3 days=$4 curve=${5:-secp384r1}
    openssl ecparam -name "$curve" -genkey -noout -out "$dir/$name-key.pem" 2>/dev/null &&
        openssl req -new -key "$dir/$name-key.pem" -subj "$subj" -out "$RJ_TMP/$name.csr" 2>/dev/null &&
        openssl x509 -req -in "$RJ_TMP/$name.csr" -CA "$dir/root-ca-cert.pem" -CAkey "$dir/root-ca-key.pem" \
            -days "$days" -sha384 -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n') \
            -out "$dir/$name-cert.pem" 2>/dev/null
}

certs_help=$("$RUNJOB" certs --help 2>&1)
if grep -q -- '--expired' <<<"$certs_help"; then
    "$RUNJOB" certs -q --out "$C" --clients-only --user expired --expired >/dev/null
else
    echo "# runjob certs has no --expired: making the expired certificate with openssl"
    ossl_client "$C" expired /CN=expired -1
fi
if grep -q -- '--no-cn' <<<"$certs_help"; then
    "$RUNJOB" certs -q --out "$C" --clients-only --user nocn --no-cn >/dev/null
else
    echo "# runjob certs has no --no-cn: making the CN-less certificate with openssl"
    ossl_client "$C" nocn /O=runjob-test 30
fi
ROGUE=$RJ_TMP/rogue
"$RUNJOB" certs -q --out "$ROGUE" --user alice >/dev/null

# The test certificates really are what their names say.
v_exp=$(openssl verify -CAfile "$CA" "$C/expired-cert.pem" 2>&1)
expect_match "tls: test cert 'expired' is expired (and otherwise valid)" 'certificate has expired' "$v_exp"
v_nocn=$(openssl verify -CAfile "$CA" "$C/nocn-cert.pem" 2>&1)
subj_nocn=$(openssl x509 -in "$C/nocn-cert.pem" -noout -subject -nameopt RFC2253 2>&1)
if [[ $v_nocn == *": OK"* ]] && [[ $subj_nocn != *CN=* ]]; then
    ok "tls: test cert 'nocn' verifies and has no CN"
else
    fail "tls: test cert 'nocn' verifies and has no CN" "$v_nocn / $subj_nocn"
fi
v_rogue=$(openssl verify -CAfile "$CA" "$ROGUE/alice-cert.pem" 2>&1)
expect_match "tls: test cert from another CA does not verify against ours" 'unable to get local issuer|unable to verify' "$v_rogue"

# A P-256 server certificate and a P-256 client certificate, same CA: for the TLS 1.2 probe.
C256=$RJ_TMP/certs256
cp -a "$C" "$C256"
openssl ecparam -name prime256v1 -genkey -noout -out "$C256/server-key.pem" 2>/dev/null &&
    openssl req -new -key "$C256/server-key.pem" -subj /CN=localhost -out "$RJ_TMP/server256.csr" 2>/dev/null &&
    openssl x509 -req -in "$RJ_TMP/server256.csr" -CA "$CA" -CAkey "$C/root-ca-key.pem" -days 2 -sha256 \
        -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n') \
        -out "$C256/server-cert.pem" 2>/dev/null &&
    ossl_client "$C256" bob256 /CN=bob 2 prime256v1 ||
    fail "tls: P-256 test certificates made"

# ---- servers -------------------------------------------------------------------------------

# The second server first (P-256 certificate made by openssl), then the main one (runjob certs).
RJ_CERTS=$C256 RJ_STATE=$RJ_TMP/state256 rj_server_start
PORT256=$RJ_PORT
SERVER256_PID=$RJ_SERVER_PID
unset RJ_PORT RJ_STATE
RJ_CERTS=$C
rj_server_start
ok "tls: runjob serve up on 127.0.0.1:$RJ_PORT (runjob certs) and :$PORT256 (openssl, P-256)"

# ---- openssl s_client ----------------------------------------------------------------------

# h2_probe PORT OUT S_CLIENT_ARGS...: handshake, send the HTTP/2 client preface and an empty
# SETTINGS frame; OUT holds s_client's stdout (summary + raw reply), OUT.err its stderr.
# Returns 0 when the server answered with an HTTP/2 SETTINGS frame.
h2_probe() {
    local port=$1 out=$2
    shift 2
    { printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\000\000\000\004\000\000\000\000\000'; sleep 1; } |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -alpn h2 \
            -CAfile "$CA" -verify_return_error -nocommands "$@" >"$out" 2>"$out.err"
    python3 -c '
import re, sys
data = open(sys.argv[1], "rb").read()
# A SETTINGS frame header: 24-bit length, type 4, flags 0 (not an ACK), stream 0.
sys.exit(0 if re.search(rb"\x00[\x00-\xff]{2}\x04\x00\x00\x00\x00\x00", data) else 1)
' "$out"
}
# Why a probe was refused, for the log.
why() { grep -ahoE 'alert [a-z ]+|Cipher is [^ ]+|New, [^,]+|error:[^:]*:[^:]*:[^:]*:[^:]+' "$1" "$1.err" | sort -u | tr '\n' ';'; }
# The probe's output as text (the raw HTTP/2 bytes hold NULs).
txt() { tr -d '\000' <"$1"; }
# gRPC does not send the TLS alert when its handshake fails: the client sees the socket close
# ("unexpected eof"). The server logs the reason, so a refusal is checked on both sides.
log_mark() { wc -l <"$RJ_SERVER_LOG"; }
# server_said MARK REGEX: a "tls: refused handshake" line whose reason matches REGEX was logged
# after line MARK (waits up to 2 s for it); prints the reason. The server logs 10 such lines a
# second at most: the probes here are a second apart.
server_said() {
    local line
    for _ in $(seq 20); do
        line=$(tail -n +"$(($1 + 1))" "$RJ_SERVER_LOG" | grep -a 'tls: refused handshake from 127\.0\.0\.1:' |
            sed -E 's/.*tls: refused handshake from [^ ]+ //' | grep -aE -- "$2" | head -1)
        [ -n "$line" ] && { echo "$line"; return 0; }
        sleep 0.1
    done
    return 1
}

P=$RJ_TMP/probe
if h2_probe "$RJ_PORT" "$P.ok13" -tls1_3 -cert "$C/alice-cert.pem" -key "$C/alice-key.pem"; then
    ok "tls: s_client -tls1_3 with alice's certificate accepted (HTTP/2 SETTINGS received)"
else
    fail "tls: s_client -tls1_3 with alice's certificate accepted (HTTP/2 SETTINGS received)" "$(why "$P.ok13")"
fi
expect_match "tls: TLS 1.3 session negotiates an allowed suite" \
    'New, TLSv1\.3, Cipher is TLS_(AES_256_GCM_SHA384|AES_128_GCM_SHA256|CHACHA20_POLY1305_SHA256)' "$(txt "$P.ok13")"
expect_match "tls: ALPN h2 negotiated" 'ALPN protocol: h2' "$(txt "$P.ok13")"
# s_client lists AES-256-GCM first; the server's order (AES-128-GCM first) decides.
expect_match "tls: the server's suite order wins: AES-128-GCM" \
    'New, TLSv1\.3, Cipher is TLS_AES_128_GCM_SHA256' "$(txt "$P.ok13")"
expect_match "tls: server certificate is ECDSA P-256" 'Server public key is 256 bit' "$(txt "$P.ok13")"
for s in TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256; do
    if h2_probe "$RJ_PORT" "$P.$s" -tls1_3 -ciphersuites "$s" -cert "$C/alice-cert.pem" -key "$C/alice-key.pem"; then
        ok "tls: s_client -tls1_3 -ciphersuites $s accepted"
    else
        fail "tls: s_client -tls1_3 -ciphersuites $s accepted" "$(why "$P.$s")"
    fi
done
if h2_probe "$RJ_PORT" "$P.ccm" -tls1_3 -ciphersuites TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256 \
    -cert "$C/alice-cert.pem" -key "$C/alice-key.pem"; then
    fail "tls: s_client -tls1_3 with only the CCM suites refused" "$(why "$P.ccm")"
else
    ok "tls: s_client -tls1_3 with only the CCM suites refused"
fi

# TLS 1.2 (and 1.1, 1.0): refused at the handshake with protocol_version, on both servers.
for port in "$PORT256" "$RJ_PORT"; do
    for v in tls1_2 tls1_1 tls1; do
        name="tls: s_client -$v refused (port $port$([ "$port" = "$PORT256" ] && echo ', P-256 certificates'))"
        if [ "$port" = "$PORT256" ]; then
            args=(-cert "$C256/bob256-cert.pem" -key "$C256/bob256-key.pem")
        else
            args=(-cert "$C/alice-cert.pem" -key "$C/alice-key.pem")
        fi
        [ "$v" = tls1_2 ] || args+=(-cipher 'DEFAULT:@SECLEVEL=0')
        mark=$(log_mark)
        if h2_probe "$port" "$P.$v.$port" "-$v" "${args[@]}"; then
            fail "$name" "HTTP/2 answered: $(why "$P.$v.$port")"
        elif grep -q 'alert protocol version' "$P.$v.$port.err" ||
            server_said "$mark" '^protocol version (TLS 1\.[0-2]|SSL 3\.0) refused$' >/dev/null; then
            ok "$name"
        else
            fail "$name" "refused, but neither a protocol_version alert nor 'protocol version ... refused' in the server log: $(why "$P.$v.$port")"
        fi
    done
done
# Positive control for the P-256 server: TLS 1.3 with the P-256 client works, so the TLS 1.2
# refusal above is the version policy, not a broken server or certificate.
if h2_probe "$PORT256" "$P.ok256" -tls1_3 -cert "$C256/bob256-cert.pem" -key "$C256/bob256-key.pem"; then
    ok "tls: s_client -tls1_3 with P-256 certificates accepted (control for the TLS 1.2 probe)"
else
    fail "tls: s_client -tls1_3 with P-256 certificates accepted (control for the TLS 1.2 probe)" "$(why "$P.ok256")"
fi

# Bad client certificates: the handshake must fail (no HTTP/2 SETTINGS), with a TLS alert to
# the client or the matching reason in the server's log.
# refused_probe NAME OUT REASON_REGEX S_CLIENT_ARGS...
refused_probe() {
    local name=$1 out=$2 reason=$3 mark said
    shift 3
    mark=$(log_mark)
    if h2_probe "$RJ_PORT" "$out" -tls1_3 "$@"; then
        fail "$name" "HTTP/2 answered: $(why "$out")"
    elif said=$(server_said "$mark" "$reason") || grep -q 'alert' "$out.err"; then
        ok "$name"
        echo "#   client: $(why "$out") server: ${said:-}"
    else
        fail "$name" "no HTTP/2, but neither a TLS alert nor /$reason/ in the server log: $(why "$out")"
    fi
}
refused_probe "tls: s_client without a client certificate refused" "$P.nocert" \
    '^no client certificate$'
refused_probe "tls: s_client with a certificate from another CA refused" "$P.rogue" \
    "^certificate signed by an unknown CA \(CN 'alice'" -cert "$ROGUE/alice-cert.pem" -key "$ROGUE/alice-key.pem"
refused_probe "tls: s_client with an expired certificate refused" "$P.expired" \
    "^client certificate expired \(CN 'expired', expired [0-9]{4}-[0-9]{2}-[0-9]{2}\)$" \
    -cert "$C/expired-cert.pem" -key "$C/expired-key.pem"

# ---- the runjob client (gRPC level) --------------------------------------------------------

out=$(rj_as alice ping 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && grep -q alice <<<"$out"; then
    ok "tls: runjob ping with alice's certificate succeeds and names alice"
else
    fail "tls: runjob ping with alice's certificate succeeds and names alice" "exit $rc: $out"
fi
# ping_refused NAME CERT KEY: the runjob client must fail, and with the server's refusal
# (UNAVAILABLE after a failed handshake, or UNAUTHENTICATED), not a local error.
ping_refused() {
    local name=$1 cert=$2 key=$3 out rc
    out=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$CA" \
        --client-cert-path "$cert" --client-key-path "$key" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        fail "$name" "ping succeeded: $out"
    elif grep -qiE 'UNAUTHENTICATED|UNAVAILABLE|handshake|unauthenticated|unavailable' <<<"$out"; then
        ok "$name"
        echo "#   $(head -c 300 <<<"$out" | tr '\n' ' ')"
    else
        fail "$name" "failed, but not with the server's refusal (exit $rc): $out"
    fi
}
ping_refused "tls: runjob ping with a CN-less certificate fails (UNAUTHENTICATED or handshake)" \
    "$C/nocn-cert.pem" "$C/nocn-key.pem"
# An expired certificate never reaches the server: the client checks its dates before dialing
# (the server's own refusal of it is the s_client probe above).
out=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$CA" \
    --client-cert-path "$C/expired-cert.pem" --client-key-path "$C/expired-key.pem" 2>&1)
rc=$?
expect_match "tls: runjob ping with an expired certificate is refused before dialing" \
    "client certificate .*expired-cert.pem expired on [0-9]{4}-[0-9]{2}-[0-9]{2}; make a new one" "$out"
expect_eq "tls: ... and exits 255" 255 "$rc"
ping_refused "tls: runjob ping with a certificate from another CA fails" "$ROGUE/alice-cert.pem" "$ROGUE/alice-key.pem"

# ---- testssl.sh ----------------------------------------------------------------------------

if [ -z "$TESTSSL" ]; then
    echo "SKIP: tls: testssl.sh audit -- testssl.sh is not installed and could not be (apt-get install -y testssl.sh)"
else
    json=$RJ_TMP/testssl.json
    log=$RJ_TMP/testssl.log
    targs=(--quiet --color 0 --warnings off --ip one --sneaky --fast
        --connect-timeout 5 --openssl-timeout 10 -p -E -U --jsonfile "$json")
    # Mutual TLS for testssl's OpenSSL-based checks: its openssl runs through openssl-mtls.sh,
    # which adds alice's certificate (and ALPN h2) to every s_client. (testssl.sh 3.0 in Debian 12
    # has no --mtls; the wrapper also works with later versions.) Its socket-based checks need no
    # certificate: they read only the ServerHello, which comes before the client certificate.
    export RJ_MTLS_CERT=$C/alice-cert.pem RJ_MTLS_KEY=$C/alice-key.pem RJ_MTLS_OPENSSL
    RJ_MTLS_OPENSSL=$(command -v openssl)
    targs+=(--openssl "$HERE/openssl-mtls.sh")
    start=$SECONDS
    mark=$(log_mark)
    timeout 240 "$TESTSSL" "${targs[@]}" "127.0.0.1:$RJ_PORT" >"$log" 2>&1
    rc=$?
    echo "# testssl $("$TESTSSL" --version 2>/dev/null | grep -oE 'testssl +[0-9][^ ]*' | head -1 | tr -s ' ') took $((SECONDS - start)) s (exit $rc)"
    if [ "$rc" -eq 124 ] || [ "$rc" -ge 240 ]; then
        fail "tls: testssl.sh ran" "exit $rc (124: timeout; >= 240: testssl error); log tail:"
        tail -15 "$log" | sed 's/^/#   /'
    else
        ok "tls: testssl.sh ran"
    fi
    while IFS= read -r line; do
        case $line in
        "ok "*) ok "${line#ok }" ;;
        "fail "*)
            line=${line#fail }
            fail "${line%%$'\t'*}" "${line#*$'\t'}"
            ;;
        *) echo "# $line" ;;
        esac
    done < <(python3 "$HERE/check_testssl.py" "$json")
    grep -E '^ (SSLv|TLS 1|ALPN)| x13' "$log" | sed 's/^/#   /'
    # testssl's OpenSSL-based checks really did mutual TLS: without the certificate the server
    # logs "no client certificate" for each of them (10 refusals a second at most are logged,
    # a sample of them when the scan is fast).
    nocert=$(tail -n +"$((mark + 1))" "$RJ_SERVER_LOG" | grep -ac 'tls: refused handshake from .*: no client certificate$')
    expect_eq "tls: testssl's handshakes presented the client certificate (server log)" 0 "$nocert"
    echo "# server's handshake refusals logged during the scan: $(tail -n +"$((mark + 1))" "$RJ_SERVER_LOG" |
        grep -a 'tls: refused handshake from' | sed -E 's/.*tls: refused handshake from [^ ]+ //' |
        sort | uniq -c | tr -s ' ' | tr '\n' ';')$(tail -n +"$((mark + 1))" "$RJ_SERVER_LOG" |
        sed -nE 's/.*tls: ([0-9]+) more refused handshake\(s\) not logged.*/\1/p' |
        awk '{ n += $1 } END { if (n) printf " and %d not logged", n }')"
fi

# ---- the server survived all of it ---------------------------------------------------------

if kill -0 "$RJ_SERVER_PID" 2>/dev/null && rj_as alice ping >/dev/null 2>&1; then
    ok "tls: server still answers after the audit"
else
    fail "tls: server still answers after the audit" "log tail:"
    tail -20 "$RJ_SERVER_LOG" | sed 's/^/#   /'
fi

# Both servers stop cleanly on SIGTERM (exit 0), and nothing in their log comes from a
# sanitizer (RUNJOB_BIN may be an ASan/UBSan build).
rj_server_stop_clean "$RJ_SERVER_PID" "tls: server (runjob certs)"
rj_server_stop_clean "$SERVER256_PID" "tls: server (P-256)"
if grep -qE 'Sanitizer|runtime error:|LeakSanitizer' "$RJ_SERVER_LOG"; then
    fail "tls: no sanitizer report in the server log"
    grep -E -A15 'Sanitizer|runtime error:' "$RJ_SERVER_LOG" | head -40 | sed 's/^/#   /'
else
    ok "tls: no sanitizer report in the server log"
fi
t_done
