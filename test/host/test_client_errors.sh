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
expect_eq "connection refused exits 255" 255 "$rc"
expect_eq "connection refused message" \
    "runjob: ping: cannot connect to 127.0.0.1:$free: connection refused — is \`runjob serve\` running? (UNAVAILABLE)" "$err"
err=$("$RUNJOB" ping -H localhost -P "$free" "${CERTS[@]}" 2>&1)
expect_match "localhost: connection refused" "cannot connect to localhost:$free: connection refused" "$err"

err=$("$RUNJOB" ping -P "$free" --ca-cert-path "$RJ_TMP/nope.pem" 2>&1); rc=$?
expect_eq "missing CA file exits 255" 255 "$rc"
expect_match "missing CA file is named, with the fix" "cannot read CA certificate '$RJ_TMP/nope.pem'.*runjob certs" "$err"
(cd "$RJ_TMP" && "$RUNJOB" ping -u nosuchuser -P "$free" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" >/dev/null 2>"$RJ_TMP/u.err")
expect_match "-u picks certs/NAME-cert.pem" "cannot read client certificate 'certs/nosuchuser-cert.pem'" "$(cat "$RJ_TMP/u.err")"

# A certificate and a key that do not belong together: said before dialing, both files named
# (gRPC alone reports "empty address list").
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$free" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/bob-key.pem" 2>&1)
rc=$?
expect_eq "cert/key mismatch exits 255" 255 "$rc"
expect_eq "cert/key mismatch: one clear line naming both files" \
    "runjob: ping: client key '$RJ_CERTS/bob-key.pem' does not belong to client certificate '$RJ_CERTS/alice-cert.pem' (use the key made with that certificate, see \`runjob certs\`) (FAILED_PRECONDITION)" "$err"
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$free" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-cert.pem" 2>&1)
expect_match "a certificate given as the key: does not parse" \
    "client certificate '.*alice-cert.pem' or client key '.*alice-cert.pem' does not parse" "$err"

rj_server_start

# extra_server PORT STATE: another server on 127.0.0.1, up and answering; its pid in XPID.
extra_server() {
    "$RUNJOB" serve -H 127.0.0.1 -P "$1" --state-dir "$2" \
        --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
        --server-cert-path "$RJ_CERTS/server-cert.pem" \
        --server-key-path "$RJ_CERTS/server-key.pem" >>"$RJ_TMP/server-extra.log" 2>&1 &
    XPID=$!
    RJ_PIDS+=("$XPID")
    for _ in $(seq 100); do
        RJ_PORT=$1 rj ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "extra server on port $1 comes up" "$(cat "$RJ_TMP/server-extra.log")"
}

# A stopped server: the kernel accepts the connection, nothing ever answers. gRPC gives up on
# the handshake after 20 s; that is silence, not a certificate problem. Runs in the background
# while the rest of the script goes on; checked at the end.
port_stopped=$(rj_free_port)
extra_server "$port_stopped" "$RJ_TMP/state-stopped"
stopped_pid=$XPID
kill -STOP "$stopped_pid"
(RJ_PORT=$port_stopped rj ping >/dev/null 2>"$RJ_TMP/stopped.err"; echo $? >"$RJ_TMP/stopped.rc") &
stopped_ping=$!

# A server that dies under a stream that has had data: it went away; the certificates had
# worked.
port_dies=$(rj_free_port)
extra_server "$port_dies" "$RJ_TMP/state-dies"
id=$(RJ_PORT=$port_dies rj start /bin/sh -c 'echo hi; sleep 30')
RJ_PORT=$port_dies rj stream "$id" >"$RJ_TMP/dies.out" 2>"$RJ_TMP/dies.err" &
stream_pid=$!
for _ in $(seq 100); do grep -q hi "$RJ_TMP/dies.out" && break; sleep 0.1; done
kill -KILL "$XPID"
wait "$XPID" 2>/dev/null # reaped here: no "Killed" notice in the log
wait "$stream_pid"
rc=$?
expect_eq "server killed mid-stream: the stream exits 255" 255 "$rc"
expect_eq "server killed mid-stream: said so, no word of certificates" \
    "runjob: stream: 127.0.0.1:$port_dies closed the connection in the middle of the call (did the server stop or restart?): Socket closed (UNAVAILABLE)" \
    "$(cat "$RJ_TMP/dies.err")"

# A second CA: its certificates are strangers to the server, and it does not vouch for it.
"$RUNJOB" certs -q --out "$RJ_TMP/other" --user alice >/dev/null
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_TMP/other/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" 2>&1)
expect_match "wrong CA: the server's certificate is rejected" \
    "^runjob: ping: rejected the server's certificate: it is not signed by the CA in '.*other/root-ca-cert.pem' \(UNAVAILABLE\)$" "$err"
err=$("$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_TMP/other/alice-cert.pem" --client-key-path "$RJ_TMP/other/alice-key.pem" 2>&1)
rc=$?
expect_eq "untrusted client certificate exits 255" 255 "$rc"
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

# Bad input, flag by flag: usage errors exit 2 before any call; what only the server can judge
# exits 255 with its words and the gRPC code. Each is one line on stderr, nothing on stdout.
# bad RC REGEX VERB ARGS...
bad() {
    local rc_want=$1 re=$2 out err rc label
    shift 2
    label=$(printf '%q ' "$@" | cut -c1-70)
    out=$(rj "$@" 2>"$RJ_TMP/bad.err" </dev/null)
    rc=$?
    err=$(cat "$RJ_TMP/bad.err")
    if [ "$rc" -ne "$rc_want" ]; then
        fail "bad input: runjob ${label}exits $rc_want" "exit $rc: $err"
    elif ! printf '%s' "$err" | grep -Eq -- "$re"; then
        fail "bad input: runjob ${label}exits $rc_want" "'$err' does not match /$re/"
    elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [ -n "$out" ]; then
        fail "bad input: runjob ${label}exits $rc_want" "not one line on stderr alone: '$out' '$err'"
    else
        ok "bad input: runjob ${label}exits $rc_want"
    fi
}
U=3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f # well-formed, unknown
USAGE="\\(see 'runjob [a-z]+ --help'\\)$"
bad 2 "^runjob: start: the command is empty .*$USAGE" start ""
# Verbs without output formats refuse -o, as stream does, rather than print text for json.
bad 2 "^runjob: rm: unknown flag '-o' $USAGE" rm -o json $U
bad 2 "^runjob: attach: unknown flag '--output' $USAGE" attach --output json $U
bad 2 "the command 'bin/true' is not an absolute path \\(the server does not know your working directory\\)" start bin/true
bad 2 "the command 'true' is not an absolute path \\(try /bin/true\\)" start true
bad 2 "--cpu 'abc' is not a number of millis" start --cpu abc /bin/true
bad 2 "--cpu '0': a limit must be above 0" start --cpu 0 /bin/true
bad 2 "--cpu '-1' is not a number" start --cpu -1 /bin/true
bad 2 "--memory '-1' is not a size" start --memory -1 /bin/true
bad 2 "--memory '0': a limit must be above 0 \\(leave the flag out for the server's default\\)" start --memory 0 /bin/true
bad 2 "--memory '99999999999999999999999' is too large" start --memory 99999999999999999999999 /bin/true
bad 2 "--memory '12Q' is not a size" start --memory 12Q /bin/true
bad 2 "--pids '-5' is not a whole number" start --pids -5 /bin/true
bad 2 "--pids '0': a limit must be above 0" start --pids 0 /bin/true
bad 2 "--riops 'x' is not a whole number" start --riops x /bin/true
bad 2 "--wbps '1.5' is not a size" start --wbps 1.5 /bin/true
bad 2 "--network 'foo' is not none or host" start --network foo /bin/true
bad 2 "--name is empty" start --name "" /bin/true
bad 2 "unknown flag '--bogus'" start --bogus /bin/true
bad 2 "flag '--cpu' needs a value" start --cpu
bad 2 "missing the command to run" run
bad 2 "missing the job: an id, a prefix of it, or a name $USAGE" stop
bad 2 "--all stops every running job of yours: name no job" stop --all a
bad 2 "--signal 'FOO' is not a signal" stop --signal FOO $U
bad 2 "--signal '99' is not a signal" stop --signal 99 $U
bad 2 "--signal '-1' is not a signal" stop --signal -1 $U
bad 2 "--grace '-5s' is not a duration" stop --grace -5s $U
bad 2 "the job id or name is empty" status ""
bad 2 "unexpected argument 'b' after the job id or name" status a b
bad 2 "--select 'foo' is not stdout, stderr or all" stream --select foo $U
bad 2 "--offset '-1' is not a byte offset" stream --offset -1 $U
bad 2 "--offset 'abc' is not a byte offset" stream --offset abc $U
bad 2 "unexpected argument 'foo'" list foo
bad 2 "--output 'yaml' is not one of table, wide, json" list -o yaml
bad 2 "unexpected argument 'extra'" ping extra
# The server's judgement, passed through with its code.
bad 255 "--cpu 1 is below the minimum 10m \\(0.01 CPUs\\) \\(the kernel's smallest CPU quota\\) \\(INVALID_ARGUMENT\\)$" start --cpu 1 /bin/true
bad 255 "--cpu 99999999 is above the server's maximum [0-9]+m \\([0-9.]+ CPUs?\\) \\(INVALID_ARGUMENT\\)$" start --cpu 99999999 /bin/true
bad 255 "--memory 1 is below the minimum 1.0MiB .*\\(INVALID_ARGUMENT\\)$" start --memory 1 /bin/true
bad 255 "--memory 1T is above the server's maximum [0-9.]+[KMG]iB \\(INVALID_ARGUMENT\\)$" start --memory 1T /bin/true
bad 255 "--pids 1 is below the minimum 2 .*\\(INVALID_ARGUMENT\\)$" start --pids 1 /bin/true
bad 255 "--pids 99999999 is above the server's maximum 32768" start --pids 99999999 /bin/true
bad 255 "--riops 1000001 is above the server's maximum 1000000" start --riops 1000001 /bin/true
bad 255 "host networking is not allowed on this server .*\\(PERMISSION_DENIED\\)$" start --network host /bin/true
bad 255 "job name 'a\\\\x0ab' is not valid .*\\(INVALID_ARGUMENT\\)$" start --name $'a\nb' /bin/true
bad 255 "job name 'n+\\.\\.\\.' is not valid" start --name "$(printf 'n%.0s' $(seq 129))" /bin/true
bad 255 "args\\[0\\] is not valid UTF-8 .*\\(INVALID_ARGUMENT\\)$" start /bin/echo $'\xff'
bad 255 "command is not valid UTF-8 .*\\(INVALID_ARGUMENT\\)$" start $'/bin/\xff'
bad 255 "too many arguments: 1025 \\(at most 1024\\) \\(INVALID_ARGUMENT\\)$" start /bin/echo $(seq 1025)
a100k=$(head -c 100000 /dev/zero | tr '\0' a)
bad 255 "arguments total 200002 bytes \\(at most 131072\\)" start /bin/echo "$a100k" "$a100k"
bad 255 "the request is [0-9]+ bytes, more than the server accepts \\(1048576\\): too many or too long arguments \\(RESOURCE_EXHAUSTED\\)$" \
    start /bin/echo $(for _ in $(seq 12); do echo "$a100k"; done)
bad 127 "the job could not start: '/nonexistent/x': no such file or directory \\(FAILED_PRECONDITION\\)$" start /nonexistent/x
# Not an id: a name or an id prefix, which names no job.
bad 255 "no job has the id or name 'nope' \\(see 'runjob list'\\) \\(NOT_FOUND\\)$" stop nope
# UUIDs are case-insensitive: an upper-case id is the same id (lower-cased before it is sent).
bad 255 "job $U not found \\(NOT_FOUND\\)$" stop 3F2B6C1E-8A4D-4C2E-9B1F-0A1B2C3D4E5F
bad 255 "job $U not found \\(NOT_FOUND\\)$" status 3F2B6C1E-8a4d-4C2E-9B1F-0A1B2C3D4E5F
bad 255 "no job has the id or name 'NOPE'" status NOPE
bad 255 "job $U not found \\(NOT_FOUND\\)$" stop $U
bad 255 "^runjob: stop: --grace 2h is above the maximum 1h[0m]* \\(INVALID_ARGUMENT\\)$" stop --grace 2h $U
bad 255 "no job has the id or name '\\.\\./\\.\\./etc/passwd'" status ../../etc/passwd
bad 255 "job $U not found \\(NOT_FOUND\\)$" status $U
bad 255 "no job has the id or name 'nope'" stream nope
bad 255 "job $U not found \\(NOT_FOUND\\)$" stream $U
# Another user's job reads exactly like an unknown one; an offset past the end of an ended
# job's output is OUT_OF_RANGE.
bobs=$(rj_as bob start /bin/sleep 600)
bad 255 "job $bobs not found \\(NOT_FOUND\\)$" status "$bobs"
bad 255 "job $bobs not found \\(NOT_FOUND\\)$" stop "$bobs"
rj_as bob stop -g 0 "$bobs" >/dev/null 2>&1
ended=$(rj start /bin/echo hi)
for _ in $(seq 100); do
    rj status -o json "$ended" 2>/dev/null | grep -q '"is_running":false' && break
    sleep 0.1
done
bad 255 "offset 100 is past the end of the job's output: it has ended with 3 bytes of stdout and stderr \\(OUT_OF_RANGE\\)$" \
    stream --no-follow --offset 100 "$ended"
bad 255 "offset 4 is past the end of the job's output: it has ended with 0 bytes of stderr" stream -s stderr --offset 4 "$ended"
expect_eq "stream from exactly the end of an ended job: nothing, exit 0" "0:" \
    "$(out=$(rj stream --offset 3 "$ended" 2>&1); echo "$?:$out")"
UP=$(printf '%s' "$ended" | tr a-f A-F)
expect_match "status with the id in upper case" "^$ended .*exited" "$(rj status "$UP" 2>&1)"
expect_eq "stream with the id in upper case" "0:hi" "$(out=$(rj stream "$UP" 2>&1); echo "$?:$out")"
running=$(rj start /bin/sleep 600)
expect_eq "stop with the id in upper case" 0 \
    "$(rj stop -g 0 "$(printf '%s' "$running" | tr a-f A-F)" >/dev/null 2>&1; echo $?)"
if rj ping >/dev/null 2>&1; then ok "the server still answers after all that"; else fail "the server still answers after all that"; fi

wait "$stopped_ping"
kill -CONT "$stopped_pid"
expect_eq "stopped server: ping exits 255" 255 "$(cat "$RJ_TMP/stopped.rc")"
expect_match "stopped server: it did not answer, no word of certificates" \
    "^runjob: ping: 127.0.0.1:$port_stopped did not answer within [0-9]+ s \\(is the server running and responsive\\?\\) \\(UNAVAILABLE\\)$" \
    "$(cat "$RJ_TMP/stopped.err")"

# The help texts' examples parse: runjob takes no flag before the verb but --help and
# --version, and serve's examples take --help after their flags (serve has no arguments).
for v in agent attach certs completion context jobctl list metrics ping rm run serve start \
    status stop stream; do "$RUNJOB" $v --help 2>&1; done >"$RJ_TMP/helps.txt"
expect_eq "help examples: no flag before the verb" "" \
    "$(grep -oE '(^|[ `(])runjob --[a-z-]+' "$RJ_TMP/helps.txt" | grep -vE -- '--(help|version)$')"
bad=$(grep -oE '(^ +|`)runjob serve [^`#]*' "$RJ_TMP/helps.txt" | sed -E 's/^ *`?//' |
    while read -r ex; do "$RUNJOB" ${ex#runjob } --help >/dev/null 2>&1 || echo "$ex"; done)
expect_eq "help examples: serve's flags exist" "" "$bad"

t_done
