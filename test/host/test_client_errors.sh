#!/usr/bin/env bash
# Client failures in plain words: connection refused, a server certificate from another CA,
# a client certificate the server does not trust, a name the certificate is not for,
# unreadable certificate files, usage errors (exit 2).
source "$(dirname "$0")/../lib.sh"
rj_setup

free=$(rj_free_port)
CERTS=(--ca-cert-path "$RJ_CERTS/root-ca-cert.pem" --client-cert-path "$RJ_CERTS/alice-cert.pem"
    --client-key-path "$RJ_CERTS/alice-key.pem")
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$free" "${CERTS[@]}" 2>&1); rc=$?
expect_eq "connection refused exits 1" 1 "$rc"
expect_eq "connection refused message" \
    "runjob: ping: cannot connect to 127.0.0.1:$free: connection refused — is \`runjob serve\` running? (UNAVAILABLE)" "$err"
err=$("$RUNJOB" ping -H localhost -P "$free" "${CERTS[@]}" 2>&1)
expect_match "localhost: connection refused" "cannot connect to localhost:$free: connection refused" "$err"

err=$("$RUNJOB" ping -P "$free" --ca-cert-path "$RJ_TMP/nope.pem" 2>&1); rc=$?
expect_eq "missing CA file exits 1" 1 "$rc"
expect_match "missing CA file is named, with the fix" "cannot read CA certificate '$RJ_TMP/nope.pem'.*runjob certs" "$err"
(cd "$RJ_TMP" && "$RUNJOB" ping -u nosuchuser -P "$free" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" >/dev/null 2>"$RJ_TMP/u.err")
expect_match "-u picks certs/NAME-cert.pem" "cannot read client certificate 'certs/nosuchuser-cert.pem'" "$(cat "$RJ_TMP/u.err")"

rj_server_start

# A second CA: its certificates are strangers to the server, and it does not vouch for it.
"$RUNJOB" certs -q --out "$RJ_TMP/other" --user alice >/dev/null
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_TMP/other/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" 2>&1)
expect_match "wrong CA: the server's certificate is rejected" \
    "^runjob: ping: rejected the server's certificate: it is not signed by the CA in '.*other/root-ca-cert.pem' \(UNAVAILABLE\)$" "$err"
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_TMP/other/alice-cert.pem" --client-key-path "$RJ_TMP/other/alice-key.pem" 2>&1)
rc=$?
expect_eq "untrusted client certificate exits 1" 1 "$rc"
expect_match "untrusted client certificate: named in the message" "other/alice-cert.pem" "$err"
expect_eq "only one line" 1 "$(printf '%s\n' "$err" | wc -l)"
echo "# untrusted client certificate: $err"

# A name the server's certificate is not for (it has localhost, 127.0.0.1 and ::1).
port2=$(rj_free_port)
"$RUNJOB" serve -H 127.0.0.2 -P "$port2" --state-dir "$RJ_TMP/state2" \
    --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
    --server-cert-path "$RJ_CERTS/server-cert.pem" \
    --server-key-path "$RJ_CERTS/server-key.pem" >>"$RJ_TMP/server2.log" 2>&1 &
RJ_PIDS+=("$!")
for _ in $(seq 50); do
    err=$("$RUNJOB" ping -H 127.0.0.2 -P "$port2" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" -u alice \
        --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" 2>&1)
    case $err in *"connection refused"*) sleep 0.1 ;; *) break ;; esac
done
expect_match "server name mismatch" "server name mismatch: the server's certificate is not issued for '127.0.0.2'" "$err"

# usage errors: exit 2, one line, pointing at --help
err=$(rj start 2>&1); rc=$?
expect_eq "usage error exits 2" 2 "$rc"
expect_eq "usage error message" "runjob: start: missing the command to run (an absolute path, like /bin/ls) (see 'runjob start --help')" "$err"
expect_eq "bad flag exits 2" 2 "$(rj stop --grace soon x >/dev/null 2>&1; echo $?)"

t_done
