#!/usr/bin/env bash
# Client verbs end to end against a real server on loopback: start/stream/status/stop/list
# round trips, stdout/stderr selection, offsets, JSON output, ownership, the jobctl
# personality and the completion script.
source "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

UUID='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# wait_ended ID: until status says the job is no longer running (10 s at most).
wait_ended() {
    for _ in $(seq 100); do
        rj status -o json "$1" | grep -q '"is_running":false' && return 0
        sleep 0.1
    done
    return 1
}

out=$(rj ping)
expect_match "ping prints the server version" '^server .* answered in' "$out"
expect_match "ping names the user" 'authenticated as alice$' "$out"
admin_ping=$(rj_as administrator ping)
expect_match "ping says what the administrator may do" \
    "authenticated as administrator \\(sees and stops every user's jobs\\)$" "$admin_ping"
expect_eq "ping does not name the administrator twice" 1 "$(grep -o administrator <<<"$admin_ping" | wc -l)"
check "ping -o json is JSON" python3 -c 'import json,sys; assert json.loads(sys.argv[1])["peer_cn"] == "alice"' "$(rj ping -o json)"

id=$(rj start /bin/echo hello world)
expect_match "start prints a job id" "$UUID" "$id"
expect_eq "stream follows to the end" "hello world" "$(rj stream "$id")"
wait_ended "$id"
st=$(rj status "$id")
expect_match "status table has the columns" 'STATE +EXIT +SIGNAL +STARTED +DURATION +MEMORY +CPU' "$st"
expect_match "status shows exited 0" "exited +0 " "$st"
expect_match "query is status" "exited +0 " "$(rj query "$id")"
json=$(rj status -o json "$id")
check "status -o json is valid JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$json"
expect_eq "json fields use the proto names, the state the table's word" "$id alice /bin/echo hello,world exited 0" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["id"], d["owner"], d["command"], ",".join(d["args"]), d["state"], d["exit_code"])' "$json")"
check "json times: RFC 3339 in UTC with milliseconds, beside the milliseconds" python3 -c '
import json, sys, datetime
d = json.loads(sys.argv[1])
for k in ("start_time", "end_time"):
    t = datetime.datetime.strptime(d[k], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    assert len(d[k]) == 24, d[k]
    assert round(t.timestamp() * 1000) == d[k + "_ms"], (d[k], d[k + "_ms"])' "$json"
expect_match "status -o wide shows the command" '/bin/echo hello world' "$(rj status -o wide "$id")"

# Flags after the command: runjob's when every word there is one and one is written in full
# (the first design's example, verbatim but for this server's port and certificates), the
# command's when none is, refused when it could be either.
ida=$("$RUNJOB" start "/usr/bin/echo" -A "hello world" --server-host="localhost" \
    --ca-cert-path="$RJ_CERTS/root-ca-cert.pem" --client-cert-path="$RJ_CERTS/alice-cert.pem" \
    --client-key-path="$RJ_CERTS/alice-key.pem" -P "$RJ_PORT")
expect_match "start CMD -A ARG --server-host=... starts the job" "$UUID" "$ida"
expect_eq "start CMD -A ARG --flags=...: -A is the argument, the flags runjob's" "hello world" \
    "$(rj stream "$ida")"
expect_eq "json: one argument, as given" '["hello world"]' \
    "$(rj status -o json "$ida" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["args"]))')"
expect_eq "run CMD -A ARG --name=N --memory=M: limits and name from after the command" \
    "hello world|named-after" \
    "$(rj run /usr/bin/echo -A "hello world" --name=named-after --memory=64M)|$(rj list -o json --name named-after | python3 -c 'import json,sys; d=json.load(sys.stdin)["jobs"]; print(d[0]["name"] if len(d) == 1 and d[0]["limits"]["memory_bytes"] == 64 << 20 else d)')"
expect_eq "run /bin/ls -d /tmp: the command's own flags stay its own" "/tmp" "$(rj run /bin/ls -d /tmp)"
expect_eq "run /bin/echo -- -n hi: -- ends runjob's flags and is not passed" "hi|" \
    "$(rj run /bin/echo -- -n hi; echo "|")"
expect_eq "run /bin/echo -- -- hi: a second -- is the command's" "-- hi" "$(rj run /bin/echo -- -- hi)"
expect_eq "run /bin/echo hi -- x: a -- among the command's words is one of them" "hi -- x" \
    "$(rj run /bin/echo hi -- x)"
n_before=$(rj list -q | wc -l)
err=$(rj run /bin/echo hello --server-host=localhost 2>&1)
expect_eq "a full runjob flag among the command's words: exit 2" 2 \
    "$(rj run /bin/echo hello --server-host=localhost >/dev/null 2>&1; echo $?)"
expect_match "... and the message names --" "^runjob: run: '--server-host=localhost' after the command is a runjob flag but 'hello' is not: .* -- before the command's arguments" "$err"
err=$(rj start /bin/ls -A /tmp 2>&1)
expect_match "only one-letter runjob flags after the command: refused, naming --" \
    "^runjob: start: '-A' after the command could be a runjob flag or the command's own: .* -- " "$err"
expect_eq "a refused command line starts no job" "$n_before" "$(rj list -q | wc -l)"

id3=$(rj start -j three /bin/sh -c 'exit 3')
wait_ended "$id3"
expect_eq "exit code 3 recorded" 3 \
    "$(rj status -o json "$id3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exit_code"])')"
# exit_code and signal are null where they mean nothing: a script reading 0 would take it for
# success.
exit_and_signal() { rj status -o json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["exit_code"], d["signal"])'; }
idr=$(rj start /bin/sleep 30)
expect_eq "json of a running job: exit_code and signal null" "running None None" "$(exit_and_signal "$idr")"
rj stop "$idr" >/dev/null
expect_eq "json of a killed job: exit_code null, its signal" "killed None 15" "$(exit_and_signal "$idr")"
expect_eq "json of an exited job: its exit_code, signal null" "exited 3 None" "$(exit_and_signal "$id3")"

# stdout and stderr stay apart
ido=$(rj start /bin/sh -c 'echo out1; echo err1 >&2; echo out2')
wait_ended "$ido"
expect_eq "stream -s stdout" "$(printf 'out1\nout2')" "$(rj stream -s stdout "$ido" 2>/dev/null)"
# one output asked for by name is what was asked for: stdout, so `| less` shows it
expect_eq "stream -s stderr goes to stdout" "err1" "$(rj stream -s stderr "$ido" 2>/dev/null)"
expect_eq "stream -s stderr writes nothing on stderr" "" "$(rj stream -s stderr "$ido" 2>&1 >/dev/null)"
expect_eq "stream -s stdout writes nothing on stderr" "" "$(rj stream -s stdout "$ido" 2>&1 >/dev/null)"
expect_eq "stream all: stdout part" "$(printf 'out1\nout2')" "$(rj stream "$ido" 2>/dev/null)"
expect_eq "stream all: stderr part" "err1" "$(rj stream "$ido" 2>&1 >/dev/null)"

# offsets
idx=$(rj start /bin/echo abcdef)
wait_ended "$idx"
expect_eq "stream --offset 3" "def" "$(rj stream --offset 3 -s stdout "$idx")"
expect_eq "stream --offset past the end of an ended job: nothing on stdout" "" \
    "$(rj stream --no-follow --offset 100 -s stdout "$idx" 2>/dev/null)"
expect_match "stream --offset past the end of an ended job: OUT_OF_RANGE, exit 255" \
    "offset 100 is past the end of the job's output: it has ended with 7 bytes of stdout \\(OUT_OF_RANGE\\) rc=255$" \
    "$(rj stream --no-follow --offset 100 -s stdout "$idx" 2>&1 >/dev/null) rc=$?"

# a running job: --no-follow returns at once; stop ends it
idr=$(rj start -j sleeper /bin/sh -c 'echo first; exec sleep 60')
sleep 1
t0=$(date +%s%N)
expect_eq "stream --no-follow of a running job" "first" "$(timeout 10 $RUNJOB stream -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" --no-follow "$idr")"
t1=$(date +%s%N)
check "--no-follow did not wait for the job" test $(( (t1 - t0) / 1000000 )) -lt 5000
expect_match "list --state running shows it" "$idr" "$(rj list --state running)"
expect_match "list --name filters" "sleeper" "$(rj list --name 'slee*')"
expect_eq "list --name filters out" "" "$(rj list -q --name 'nomatch*')"
# a follower sees the end when the job is stopped
rj stream "$idr" >"$RJ_TMP/follow.out" 2>&1 &
follower=$!
sleep 0.5
stop_out=$(rj stop --grace 2s "$idr")
expect_match "stop prints the final status: killed by SIGTERM" "killed +- +SIGTERM" "$stop_out"
wait "$follower"
expect_eq "a follower ends when the job is stopped" 0 $?
expect_eq "the follower got the output" "first" "$(cat "$RJ_TMP/follow.out")"

idk=$(rj start /bin/sh -c 'trap "" TERM; exec sleep 60')
sleep 0.5
expect_match "stop --signal KILL --grace 0" "killed +- +SIGKILL" "$(rj stop --signal KILL --grace 0 "$idk")"

# list
lst=$(rj list -q)
for j in "$id" "$id3" "$ido" "$idr"; do
    expect_match "list -q has $j" "$j" "$lst"
done
check "list -o json is valid JSON with jobs" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert len(d["jobs"]) >= 5 and all("state" in j for j in d["jobs"])' "$(rj list -o json)"
expect_eq "no OWNER column for a user" "" "$(rj list | head -1 | grep -o OWNER)"
expect_eq "OWNER column for an administrator" "OWNER" "$(rj_as administrator list | head -1 | grep -o OWNER)"
expect_match "administrator sees alice's jobs" "$id" "$(rj_as administrator list -q)"
expect_eq "bob does not see alice's jobs" "" "$(rj_as bob list -q)"
err=$(rj_as bob status "$id" 2>&1)
expect_eq "bob's status of alice's job exits 255" 255 "$(rj_as bob status "$id" >/dev/null 2>&1; echo $?)"
expect_match "another user's job is NOT_FOUND" '^runjob: status: .*\(NOT_FOUND\)$' "$err"
expect_match "an unknown id is NOT_FOUND" '\(NOT_FOUND\)$' \
    "$(rj stream 00000000-0000-4000-8000-000000000000 2>&1)"
expect_match "administrator can stop alice's job" "exited" "$(rj_as administrator stop "$id")"
# a job that had already ended: one line says so, its status still printed, exit 0
stop_err=$(rj stop "$id" 2>&1 >/dev/null)
expect_eq "stop of an ended job says so on stderr" \
    "runjob: stop: job $id had already ended: exited with code 0" "$stop_err"
expect_match "stop of an ended job prints its status" "exited +0" "$(rj stop "$id" 2>/dev/null)"
expect_eq "stop of an ended job exits 0" 0 "$(rj stop "$id" >/dev/null 2>&1; echo $?)"

# the jobctl personality, with -u picking certs/<user>-cert.pem from the working directory
ln -sf "$RUNJOB" "$RJ_TMP/jobctl"
pushd "$RJ_TMP" >/dev/null
JC=("$RJ_TMP/jobctl" --hostPort "127.0.0.1:$RJ_PORT" -u alice)
jid=$("${JC[@]}" start -j hello -c /bin/sh -- -c 'echo hi there; echo oops >&2')
expect_match "jobctl start prints an id" "$UUID" "$jid"
expect_eq "jobctl stream: stdout by default" "hi there" "$("${JC[@]}" stream "$jid" 2>/dev/null)"
expect_eq "jobctl stream -s stderr (to stdout)" "oops" "$("${JC[@]}" stream -s stderr "$jid" 2>/dev/null)"
expect_match "jobctl query" "exited +0" "$("${JC[@]}" query "$jid")"
expect_match "jobctl list" "hello" "$("${JC[@]}" list)"
expect_match "jobctl stop of an ended job prints its status" "exited" "$("${JC[@]}" stop "$jid")"
expect_match "jobctl errors name jobctl" '^jobctl: query: .*\(NOT_FOUND\)$' \
    "$("${JC[@]}" query 00000000-0000-4000-8000-000000000000 2>&1)"
# jobctl speaks jobmanager.v1 (the audit log names its calls), and the table shows it
expect_match "jobctl calls the jobmanager.v1 service" 'method=jobmanager.v1/Query' "$(cat "$RJ_SERVER_LOG")"
expect_eq "jobctl stream -s all: both streams as written" "hi there
oops" "$("${JC[@]}" stream -s all "$jid" 2>/dev/null)"
sid=$("${JC[@]}" start -j sleeper /bin/sleep 60)
expect_match "jobctl query of a running job: running, with a pid" "sleeper +$sid +running +- +- +[0-9]+" \
    "$("${JC[@]}" query "$sid")"
expect_match "jobctl start: a name in use is ALREADY_EXISTS" '\(ALREADY_EXISTS\)$' \
    "$("${JC[@]}" start -j sleeper /bin/sleep 60 2>&1)"
expect_match "jobctl stop kills (SIGKILL) and prints the status" "sleeper +$sid +killed +- +SIGKILL" \
    "$("${JC[@]}" stop "$sid")"
expect_match "jobctl list: NAME and ID first, no OWNER column for one's own jobs" '^NAME +ID +STATE' \
    "$("${JC[@]}" list | head -1)"
expect_match "jobctl list as administrator: the OWNER column" "hello +$jid +alice +exited" \
    "$("$RJ_TMP/jobctl" --hostPort "127.0.0.1:$RJ_PORT" -u administrator list)"
expect_match "jobctl start --dry-run prints the jobmanager.v1 request" '"programPath": ?"/bin/echo"' \
    "$("${JC[@]}" start --dry-run -j x -c /bin/echo -- hi)"
expect_eq "jobctl: a bad --hostPort is a usage error" 2 \
    "$("$RJ_TMP/jobctl" --hostPort 127.0.0.1 list >/dev/null 2>&1; echo $?)"
mkdir -p "$RJ_TMP/c1/certs"
cp "$RJ_CERTS/alice-cert.pem" "$RJ_TMP/c1/certs/client1-cert.pem"
cp "$RJ_CERTS/alice-key.pem" "$RJ_TMP/c1/certs/client1-key.pem"
cp "$RJ_CERTS/root-ca-cert.pem" "$RJ_TMP/c1/certs/root-ca-cert.pem"
cd "$RJ_TMP/c1"
expect_match "jobctl's default user is client1" "$jid" \
    "$(env -u RUNJOB_USER "$RJ_TMP/jobctl" --hostPort "127.0.0.1:$RJ_PORT" list)"
popd >/dev/null

# completion
check "completion bash loads" bash -c "source <('$RUNJOB' completion bash)"
expect_eq "completion bash completes verbs" "start status stop stream" \
    "$(bash -c "source <('$RUNJOB' completion bash); COMP_WORDS=(runjob st); COMP_CWORD=1; _runjob; echo \${COMPREPLY[*]}")"
expect_match "completion bash completes flags" "--follow" \
    "$(PATH="$(dirname "$RUNJOB"):$PATH" bash -c "source <('$RUNJOB' completion bash); COMP_WORDS=(runjob start --fo); COMP_CWORD=2; _runjob; echo \${COMPREPLY[*]}")"
# ids: stop offers running jobs only, status every job; -u offers the users of ./certs
comp_dir=$(mktemp -d "$RJ_TMP/comp.XXXXXX")
ln -s "$RUNJOB" "$comp_dir/runjob"
mkdir -p "$comp_dir/certs" && cp "$RJ_CERTS"/*.pem "$comp_dir/certs/"
running=$(rj start /bin/sleep 30)
ended=$(rj start /bin/true)
for _ in $(seq 50); do rj status "$ended" | grep -q exited && break; sleep 0.1; done
comp() {
    (cd "$comp_dir" && PATH="$comp_dir:$PATH" RUNJOB_SERVER_HOST=127.0.0.1 RUNJOB_SERVER_PORT=$RJ_PORT \
        RUNJOB_USER=alice bash -c "source <(runjob completion bash); COMP_WORDS=($*); COMP_CWORD=\$((\${#COMP_WORDS[@]} - 1)); _runjob; echo \${COMPREPLY[*]}")
}
out=$(comp runjob stop "''")
expect_match "completion: stop offers running jobs" "$running" "$out"
if [[ $out == *"$ended"* ]]; then fail "completion: stop does not offer ended jobs" "$out"; else ok "completion: stop does not offer ended jobs"; fi
expect_match "completion: status offers ended jobs too" "$ended" "$(comp runjob status "''")"
expect_eq "completion: -u offers the users of ./certs" "administrator alice bob client" "$(comp runjob ping -u "''")"
rj stop -g 0 "$running" >/dev/null 2>&1
if command -v zsh >/dev/null; then
    check "completion zsh loads" zsh -c "autoload -U compinit; compinit -u; source <('$RUNJOB' completion zsh)"
else
    echo "SKIP: completion zsh loads -- zsh is not installed"
fi

# colour: only on a terminal, never with NO_COLOR
cmd=$(printf '%q ' "$RUNJOB" list -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem")
esc=$(printf '\033')
expect_match "colour on a terminal" "$esc\\[" "$(env -u NO_COLOR script -qec "$cmd" /dev/null)"
expect_eq "no colour with NO_COLOR" 0 "$(NO_COLOR=1 script -qec "$cmd" /dev/null | grep -c "$esc\[")"
expect_eq "no colour into a pipe" 0 "$(rj list | grep -c "$esc\[")"

t_done
