#!/usr/bin/env bash
# `runjob run` (and start -f): live output, exit-code propagation, Ctrl-C behaviour, big output,
# a reader that goes away.
source "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

rc_of() { "$@" >/dev/null 2>&1; echo $?; }
# run_bg ARGS...: `runjob run` in the background as alice, with $! its own pid (not a subshell's).
run_bg() {
    exec "$RUNJOB" run -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
        --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" "$@"
}

expect_eq "run /bin/true exits 0" 0 "$(rc_of rj run /bin/true)"
expect_eq "run exit 3 exits 3" 3 "$(rc_of rj run /bin/sh -c 'exit 3')"
expect_eq "run killed by 9 exits 137" 137 "$(rc_of rj run /bin/sh -c 'kill -9 $$')"
expect_match "a killed job's status goes to stderr" 'job .* killed by SIGKILL' \
    "$(rj run /bin/sh -c 'kill -9 $$' 2>&1 >/dev/null)"
expect_eq "run: stdout to stdout" "out" "$(rj run /bin/sh -c 'echo out; echo err >&2' 2>/dev/null)"
expect_eq "run: stderr to stderr" "err" "$(rj run /bin/sh -c 'echo out; echo err >&2' 2>&1 >/dev/null)"
expect_eq "run passes flags after the command to it" "-n,x," "$(rj run /usr/bin/printf -- '%s,' -n x)"
# exit codes that are not the job's: sh's 127 and 126 for the command, ssh's 255 for runjob's own
expect_eq "run: a missing program exits 127" 127 "$(rc_of rj run /nonexistent/prog)"
expect_eq "run: a program that is not executable exits 126" 126 "$(rc_of rj run /etc/passwd)"
expect_eq "run: a directory exits 126" 126 "$(rc_of rj run /tmp)"
expect_eq "start: a missing program exits 127" 127 "$(rc_of rj start /nonexistent/prog)"
expect_eq "run: a server that cannot be reached exits 255" 255 \
    "$(RJ_PORT=$(rj_free_port) rc_of rj run /bin/true)"
expect_eq "run: a job's own exit 255 is its own" 255 "$(rc_of rj run /bin/sh -c 'exit 255')"

# stdin is not passed (the job reads /dev/null): run says so when it would lose input
err=$(echo data | rj run /bin/cat 2>&1 >/dev/null)
expect_eq "run with a pipe on stdin: one note" \
    "runjob: note: stdin is not passed to the job (it reads /dev/null)" "$err"
expect_eq "run: the job reads /dev/null" "" "$(echo data | rj run /bin/cat 2>/dev/null)"
printf 'data\n' >"$RJ_TMP/in.txt"
expect_match "run with a file on stdin: the note" "stdin is not passed" \
    "$(rj run /bin/true 2>&1 <"$RJ_TMP/in.txt")"
expect_eq "run with /dev/null on stdin: no note" "" "$(rj run /bin/true 2>&1 </dev/null)"
expect_eq "start with a pipe on stdin: no note" "" "$(echo data | rj start /bin/true 2>&1 >/dev/null)"

# start -f: the id on stderr, the output on stdout, the exit code
out=$(rj start -f /bin/sh -c 'echo followed; exit 4' 2>"$RJ_TMP/f.err")
rc=$?
expect_eq "start -f streams" "followed" "$out"
expect_eq "start -f exits with the job's code" 4 "$rc"
expect_match "start -f prints the id on stderr" '^[0-9a-f-]{36}$' "$(head -1 "$RJ_TMP/f.err")"

# live: the first line arrives while the job still runs
rj run /bin/sh -c 'echo early; sleep 3; echo late' >"$RJ_TMP/live.out" 2>&1 &
p=$!
sleep 1.5
expect_eq "run shows output live" "early" "$(cat "$RJ_TMP/live.out")"
wait "$p"

# 5 MB through one stream (multi-slice messages on the client)
expect_eq "run carries 5 MB intact" "5000000 $(head -c 5000000 /dev/zero | tr '\0' 'x' | md5sum | cut -d' ' -f1)" \
    "$(rj run /bin/sh -c "head -c 5000000 /dev/zero | tr '\\0' x" | tee >(wc -c >"$RJ_TMP/n") | md5sum | cut -d' ' -f1 | { read -r m; sleep 0.2; echo "$(cat "$RJ_TMP/n") $m"; })"

# Ctrl-C: the first stops the job with the grace period (SIGTERM), exit 128+15
run_bg /bin/sleep 100 >"$RJ_TMP/int.out" 2>"$RJ_TMP/int.err" &
p=$!
sleep 1
kill -INT "$p"
wait "$p"
rc=$?
expect_eq "Ctrl-C stops the job: exit 143" 143 "$rc"
expect_match "Ctrl-C says it stops" 'stopping job' "$(cat "$RJ_TMP/int.err")"
expect_match "Ctrl-C prints the final status" 'killed by SIGTERM' "$(cat "$RJ_TMP/int.err")"

# A job that ignores SIGTERM: the second Ctrl-C kills it at once
run_bg /bin/sh -c 'trap "" TERM; echo ready; while :; do sleep 0.1; done' >"$RJ_TMP/int2.out" 2>"$RJ_TMP/int2.err" &
p=$!
for _ in $(seq 50); do grep -q ready "$RJ_TMP/int2.out" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s%N)
kill -INT "$p"
sleep 0.5
kill -INT "$p"
wait "$p"
rc=$?
t1=$(date +%s%N)
expect_eq "second Ctrl-C kills: exit 137" 137 "$rc"
check "second Ctrl-C does not wait for the grace period" test $(( (t1 - t0) / 1000000 )) -lt 5000
expect_match "second Ctrl-C says it kills" 'killing job' "$(cat "$RJ_TMP/int2.err")"
expect_match "second Ctrl-C prints the final status" 'killed by SIGKILL' "$(cat "$RJ_TMP/int2.err")"

# A reader that goes away: quiet, exit 141 (128 + SIGPIPE) as a local pipeline's writer
id=$(rj start /bin/sh -c 'yes | head -c 3000000')
out=$(rj stream "$id" 2>"$RJ_TMP/pipe.err" | head -c 10; echo " rc=${PIPESTATUS[0]}")
expect_eq "stream | head: exits 141" "yyyyy rc=141" "$(echo "$out" | tr -d '\n')"
expect_eq "stream | head: nothing on stderr" "" "$(cat "$RJ_TMP/pipe.err")"

# stream only watches: an endless job goes on after its reader left (`timeout`: a hang fails)
export -f rj rj_as
export RUNJOB RJ_PORT RJ_CERTS
id=$(rj start -j streampipe /usr/bin/yes)
out=$(timeout 20 bash -c 'rj stream "$1" | head -2; echo "rc=${PIPESTATUS[0]}"' _ "$id" 2>"$RJ_TMP/pipe3.err")
expect_eq "stream yes | head -2: 2 lines, exits 141" "y y rc=141" "$(echo "$out" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "stream yes | head -2: nothing on stderr" "" "$(cat "$RJ_TMP/pipe3.err")"
expect_eq "stream | head leaves the job running" "$id" "$(rj list -q --state running --name streampipe)"
rj stop --grace 0 "$id" >/dev/null

# run owns its job: when its reader leaves, the job is stopped, and run ends at once
out=$(timeout 20 bash -c 'rj run -j runpipe /usr/bin/yes | head -2; echo "rc=${PIPESTATUS[0]}"' 2>"$RJ_TMP/pipe4.err")
expect_eq "run yes | head -2: 2 lines, exits 141 (not hung: timeout gives 124)" "y y rc=141" \
    "$(echo "$out" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "run yes | head -2: nothing on stderr" "" "$(cat "$RJ_TMP/pipe4.err")"
check "run | head: the job was started" test -n "$(rj list -q --name runpipe)"
for _ in $(seq 50); do [ -z "$(rj list -q --state running --name runpipe)" ] && break; sleep 0.1; done
expect_eq "run | head: the job is stopped" "" "$(rj list -q --state running --name runpipe)"
expect_match "run | head: stopped by SIGTERM" 'killed.*SIGTERM' "$(rj list --name runpipe)"
out=$(rj run /bin/sh -c 'yes | head -c 3000000; exit 5' 2>"$RJ_TMP/pipe2.err" | head -c 4; echo " rc=${PIPESTATUS[0]}")
expect_eq "run | head: exits 141, not the job's code" "yy rc=141" "$(echo "$out" | tr -d '\n')"

# run is tied to its client, start -f is not: kill -9 both clients
client_flags=(-H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem"
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem")
"$RUNJOB" run "${client_flags[@]}" -j tied /bin/sleep 60 >/dev/null 2>&1 &
tied_pid=$!
"$RUNJOB" start "${client_flags[@]}" -f -j untied /bin/sleep 60 >/dev/null 2>&1 &
untied_pid=$!
for _ in $(seq 50); do
    [ "$(rj list --state running -o json | grep -c '"name": *"\(un\)\?tied"')" = 2 ] && break
    sleep 0.1
done
sleep 0.3 # both streams open
kill -9 "$tied_pid" "$untied_pid"
wait "$tied_pid" "$untied_pid" 2>/dev/null
for _ in $(seq 100); do rj status tied | grep -q killed && break; sleep 0.1; done
expect_match "run killed with -9: the server stops its job" "tied +killed" "$(rj status tied)"
expect_match "... and says why in its log" "its client \(.*\) went away: stopping it" "$(cat "$RJ_SERVER_LOG")"
expect_match "start -f killed with -9: its job goes on" "untied +running" "$(rj status untied)"
rj stop -g 0 untied >/dev/null 2>&1

t_done
