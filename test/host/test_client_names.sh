#!/bin/bash
# Jobs by name or id prefix wherever a job is named (status, stop, stream), stop of several
# jobs and --all, and stream's --tail, --since and --timestamps, against a real server.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start
cd "$RJ_TMP" || exit 1

UUID='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

# names: the most recent job of that name
old=$(rj start -j build /bin/sh -c 'echo first')
new=$(rj start -j build /bin/sh -c 'echo second; exit 3')
for _ in $(seq 50); do rj status "$new" 2>/dev/null | grep -q exited && break; sleep 0.1; done
expect_match "status by name: the most recent job of that name" "$new" "$(rj status build)"
expect_eq "stream by name" "second" "$(rj stream --no-follow build)"
expect_match "status by a unique id prefix" "$old" "$(rj status "${old:0:13}")"
expect_match "an id prefix in upper case" "$old" "$(rj status "$(echo "${old:0:13}" | tr a-f A-F)")"
out=$(rj status nosuchjob 2>&1)
expect_match "an unknown name: one line, NOT_FOUND, exit 255" \
    "^runjob: status: no job has the id or name 'nosuchjob' .*\(NOT_FOUND\)$" "$out"
expect_eq "... exit 255" 255 "$(rj status nosuchjob >/dev/null 2>&1; echo $?)"
# an ambiguous prefix lists the candidates: start jobs until two share a first hex digit
declare -A first
amb=""
for _ in $(seq 20); do
    j=$(rj start /bin/true)
    d=${j:0:1}
    if [ -n "${first[$d]:-}" ]; then amb=$d; break; fi
    first[$d]=$j
done
out=$(rj status "$amb" 2>&1)
rc=$?
expect_match "an ambiguous prefix is refused, listing the candidates" \
    "'$amb' names [0-9]+ jobs; give more of the id:" "$out"
expect_match "... among them the ones that match" "${first[$amb]}" "$out"
expect_eq "... exit 255" 255 "$rc"
# names are per user: bob's build is not alice's
bobs=$(rj_as bob start -j build /bin/sleep 30)
expect_match "a name names the caller's own job" "$new" "$(rj status build)"
expect_match "an administrator naming several users' jobs of one name is asked for the id" \
    "'build' is the name of other users' jobs, not yours: give the id" \
    "$(rj_as administrator status build 2>&1)"
bobonly=$(rj_as bob start -j bobonly /bin/true)
expect_match "the administrator names another user's job by its own name" "$bobonly" \
    "$(rj_as administrator status bobonly 2>&1)"
rj_as bob stop -g 0 build >/dev/null 2>&1

# stop several, and --all
a=$(rj start -j s1 /bin/sleep 60)
b=$(rj start -j s2 /bin/sleep 60)
c=$(rj start -j s3 /bin/sleep 60)
t0=$(date +%s%N)
out=$(rj stop -g 5s s1 "${b:0:13}" 2>&1)
expect_match "stop of several: each in the table" "s1 +killed" "$out"
expect_match "... by name and by prefix" "s2 +killed" "$out"
out=$(rj stop s3 nosuchjob 2>&1)
rc=$?
expect_match "stop of a known and an unknown job stops the known one" "s3 +killed" "$out"
expect_match "... and says which was not found" "no job has the id or name 'nosuchjob'" "$out"
expect_eq "... and exits 255" 255 "$rc"
d=$(rj start -j s4 /bin/sh -c 'trap "" TERM; sleep 60')
e=$(rj start -j s5 /bin/sh -c 'trap "" TERM; sleep 60')
bobs=$(rj_as bob start -j bobs /bin/sleep 60)
t0=$(date +%s%N)
out=$(rj stop --all -g 3s 2>&1)
t1=$(date +%s%N)
expect_match "stop --all stops every running job of the caller" "s4 +killed +- +SIGKILL" "$out"
expect_match "... all of them" "s5 +killed +- +SIGKILL" "$out"
# two jobs that ignore SIGTERM with a 3 s grace each: together about 3 s, one after the
# other at least 6 s
if [ $(((t1 - t0) / 1000000)) -lt 5900 ]; then ok "stop of several waits out their graces together"; else
    fail "stop of several waits out their graces together" "took $(((t1 - t0) / 1000000)) ms"; fi
expect_match "stop --all leaves other users' jobs alone" "running" "$(rj_as bob status "$bobs")"
expect_match "stop --all with nothing running says so" "you have no running job" "$(rj stop --all 2>&1)"
expect_eq "stop --all with a job named too is a usage error" 2 "$(rj stop --all s1 >/dev/null 2>&1; echo $?)"
out=$(rj_as administrator stop --all 2>&1)
expect_match "an administrator's --all is its own jobs only" "you have no running job" "$out"
expect_match "... bob's job still runs" "running" "$(rj_as bob status "$bobs")"
rj_as bob stop -g 0 "$bobs" >/dev/null 2>&1

# stream --tail, --since, --timestamps
seqj=$(rj start -j seq /bin/sh -c 'seq 1 200000; echo oops >&2')
for _ in $(seq 50); do [ "$(rj stream --no-follow -s stderr seq 2>/dev/null)" = oops ] && break; sleep 0.1; done
expect_eq "stream --tail 3 --no-follow: the last three lines" "199999
200000" "$(rj stream --no-follow --tail 3 seq 2>/dev/null)"
expect_eq "... the third being stderr's, on stderr" "oops" "$(rj stream --no-follow --tail 3 seq 2>&1 >/dev/null)"
expect_eq "stream -s stdout --tail 2" "199999
200000" "$(rj stream --no-follow -s stdout --tail 2 seq)"
# --tail 0: nothing of what was there, then what comes (however slow this client is to start)
rj start -j later /bin/sh -c 'echo early; i=0; while [ $i -lt 20 ]; do sleep 0.3; echo late; i=$((i+1)); done' >/dev/null
for _ in $(seq 50); do [ "$(rj stream --no-follow later 2>/dev/null)" ] && break; sleep 0.1; done
out=$(rj stream --tail 0 later 2>/dev/null)
expect_match "stream --tail 0 follows from now: what comes" "^late$" "$(printf '%s\n' "$out" | tail -1)"
expect_eq "... and nothing of what was there" "" "$(printf '%s\n' "$out" | grep -v '^late$')"
expect_eq "stream --tail larger than the output prints all of it" 200001 "$(rj stream --tail 999999 seq 2>&1 | wc -l)"
out=$(rj stream --timestamps --tail 1 -s stdout seq)
expect_match "stream --timestamps: each line with its RFC 3339 receive time" \
    '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z 200000$' "$out"
expect_eq "stream --since 1h: everything of the last hour" 200000 "$(rj stream -s stdout --since 1h seq | wc -l)"
sleep 1.2
expect_eq "stream --since 1s: nothing older" 0 "$(rj stream -s stdout --since 1s seq | wc -l)"
# lines written apart in time keep their own times, streamed live or replayed after the end,
# and --since keeps those after its cut-off
rj start -j paced /bin/sh -c 'echo one; sleep 0.5; echo two; sleep 0.5; echo three' >/dev/null
rj stream -t paced >"$RJ_TMP/paced.live" 2>&1 &
live=$!
for _ in $(seq 50); do rj status paced 2>/dev/null | grep -q exited && break; sleep 0.1; done
wait "$live"
out=$(rj stream -t paced 2>&1)
expect_eq "stream -t after the end: the lines" "one two three" "$(printf '%s\n' "$out" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//')"
expect_eq "... with the same times as streamed live" "$(cat "$RJ_TMP/paced.live")" "$out"
# ms since the epoch of each line's stamp
stamps_ms() { while read -r stamp _; do date -u -d "$stamp" +%s%3N; done; }
ms=($(printf '%s\n' "$out" | stamps_ms))
if [ "${#ms[@]}" = 3 ] && [ $((ms[1] - ms[0])) -ge 400 ] && [ $((ms[2] - ms[1])) -ge 400 ]; then
    ok "... each line its own time, half a second apart"
else fail "... each line its own time, half a second apart" "$out"; fi
ms=($(stamps_ms <"$RJ_TMP/paced.live"))
if [ "${#ms[@]}" = 3 ]; then
    # the cut-off a quarter second before "three" came, after "two"
    since=$(($(date +%s%3N) - ms[2] + 250))
    expect_eq "stream --since after the end: what came after the cut-off" "three" \
        "$(rj stream --since "${since}ms" paced 2>&1)"
fi
expect_eq "--tail with --offset is a usage error" 2 "$(rj stream --tail 1 --offset 5 seq >/dev/null 2>&1; echo $?)"
expect_eq "--tail of a word is a usage error" 2 "$(rj stream --tail many seq >/dev/null 2>&1; echo $?)"
big=$(rj start -j big /bin/sh -c 'head -c 30000000 /dev/zero | tr "\0" x; echo; echo end')
for _ in $(seq 100); do rj status big 2>/dev/null | grep -q exited && break; sleep 0.1; done
expect_eq "stream --tail 1 of 30 MB ends in its last line" "end" "$(rj stream --tail 1 big)"
t_done
