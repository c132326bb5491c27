#!/bin/bash
# The client certificate's CN is the user, so a certificate whose subject names more than one CN
# (signed by the server's own CA) is refused with UNAUTHENTICATED, "ambiguous identity", rather
# than read as whichever CN comes first: CN=alice/CN=administrator must not be alice to one
# reader and administrator to another. The refusal is in the audit line and in the log.
. "$(dirname "$0")/../lib.sh"
rj_setup

# mkcert NAME SUBJECT [openssl req flags...]: a client certificate signed by the test CA, as
# certs/NAME-cert.pem and certs/NAME-key.pem (rj_as NAME finds them).
mkcert() {
    local name=$1 subj=$2
    shift 2
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -subj "$subj" "$@" \
        -keyout "$RJ_CERTS/$name-key.pem" -out "$RJ_TMP/$name.csr" >/dev/null 2>&1 &&
        openssl x509 -req -in "$RJ_TMP/$name.csr" -CA "$RJ_CERTS/root-ca-cert.pem" \
            -CAkey "$RJ_CERTS/root-ca-key.pem" -CAcreateserial -days 1 -extfile "$RJ_TMP/ext" \
            -out "$RJ_CERTS/$name-cert.pem" >/dev/null 2>&1 ||
        { fail "make the certificate $subj" "openssl failed"; t_done; exit; }
}
printf 'extendedKeyUsage=clientAuth\n' >"$RJ_TMP/ext"
mkcert twocn '/CN=alice/CN=administrator'
mkcert twocn-rev '/CN=administrator/CN=alice'
mkcert twocn-mv '/CN=alice+CN=administrator' -multivalue-rdn
# The same name twice is refused too: more than one CN is refused, not compared.
mkcert apart '/CN=alice/O=x/CN=alice'
mkcert single '/O=x/CN=alice'

rj_server_start
for c in twocn twocn-rev twocn-mv apart; do
    subj=$(openssl x509 -in "$RJ_CERTS/$c-cert.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
    out=$(rj_as "$c" ping 2>&1)
    rc=$?
    expect_eq "$subj: ping fails (255, runjob's own failure)" 255 "$rc"
    expect_match "$subj: UNAUTHENTICATED, ambiguous identity" 'ambiguous identity.*UNAUTHENTICATED' "$out"
done
out=$(rj_as twocn list 2>&1)
expect_match "two CNs: list is refused as well" 'ambiguous identity.*UNAUTHENTICATED' "$out"
out=$(rj_as twocn run /bin/true 2>&1)
expect_match "two CNs: no job is started" 'ambiguous identity.*UNAUTHENTICATED' "$out"

# One CN, wherever it sits in the subject, is the user.
expect_match "one CN after other attributes: alice" 'authenticated as alice' "$(rj_as single ping 2>&1)"
expect_match "alice's own certificate still works" 'authenticated as alice' "$(rj_as alice ping 2>&1)"

rj_server_stop
n=$(grep -c 'audit cn="-" .*method=Ping .*code=UNAUTHENTICATED' "$RJ_SERVER_LOG")
expect_eq "each refused ping has its audit line, no user in it" 4 "$n"
n=$(grep -c 'audit cn="-" .*method=Start .*code=UNAUTHENTICATED' "$RJ_SERVER_LOG")
expect_eq "the refused start has its audit line" 1 "$n"
n=$(grep -c 'warn.*ambiguous identity' "$RJ_SERVER_LOG")
expect_eq "the log says why, once per refused call" 6 "$n"
# Besides the refusals, only alice's pings (the start-up probe's, the two above) were audited.
other=$(grep ' audit ' "$RJ_SERVER_LOG" | grep -v 'audit cn="-" ' | grep -v 'audit cn="alice" .*method=Ping .*code=OK')
expect_eq "no call with an ambiguous certificate ran as any user" "" "$other"
t_done
