#!/bin/bash
# runjob rm, --retain-ended and --max-state-bytes: ended jobs go away with their record and
# output; a running job is refused (FAILED_PRECONDITION), another user's job is NOT_FOUND like an
# unknown one, an administrator removes anyone's; several ids are each reported; a stream reading
# a job while it is removed ends cleanly with what the output had; the retention sweep removes
# jobs after their end (and those that expired while the server was down); over the cap, the
# jobs that ended first go first.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

wait_end() { # JOB [USER]: until it is no longer running (at most 30 s)
    for _ in $(seq 300); do
        rj_as "${2:-alice}" status -o json "$1" 2>/dev/null | grep -q '"is_running":false' && return 0
        sleep 0.1
    done
    return 1
}
gone() { # JOB: its folder (and its renamed folder) gone from the state directory within 5 s
    for _ in $(seq 50); do
        [ ! -e "$RJ_STATE/$1" ] && [ ! -e "$RJ_STATE/.rm-$1" ] && return 0
        sleep 0.1
    done
    return 1
}
quiet() { "$@" >/dev/null 2>&1; }
UNKNOWN=00000000-0000-4000-8000-000000000000

# An ended job: removed, then unknown, and its folder and output gone.
A=$(rj start /bin/sh -c 'echo hello')
wait_end "$A"
check "the job's folder holds its output" test -s "$RJ_STATE/$A/output"
out=$(rj rm "$A" 2>&1)
rc=$?
expect_eq "rm of an ended job prints its id" "$A" "$out"
expect_eq "and exits 0" 0 "$rc"
out=$(rj status "$A" 2>&1)
expect_match "status then says NOT_FOUND" "job $A not found .*NOT_FOUND" "$out"
check "its folder and output are gone from the state directory" gone "$A"
out=$(rj list -q)
case "$out" in *"$A"*) fail "list no longer shows it" "$out" ;; *) ok "list no longer shows it" ;; esac
out=$(rj rm "$A" 2>&1)
rc=$?
expect_match "rm again: NOT_FOUND" "NOT_FOUND" "$out"
expect_eq "and exits 255" 255 "$rc"

# A running job is refused, and stays.
R=$(rj start /bin/sleep 60)
out=$(rj rm "$R" 2>&1)
rc=$?
expect_match "rm of a running job: FAILED_PRECONDITION, in plain words" \
    "job $R is still running; stop it first.*FAILED_PRECONDITION" "$out"
expect_eq "and exits 255" 255 "$rc"
check "the running job is still there" quiet rj status "$R"

# Another user's job looks unknown; an administrator removes anyone's.
B=$(rj start /bin/true)
wait_end "$B"
bob=$(rj_as bob rm "$B" 2>&1)
unk=$(rj_as bob rm "$UNKNOWN" 2>&1)
expect_eq "bob's rm of alice's job: the words of an unknown id" \
    "${unk//$UNKNOWN/ID}" "${bob//$B/ID}"
expect_match "NOT_FOUND" "NOT_FOUND" "$bob"
check "alice's job is still there" quiet rj status "$B"
expect_eq "an administrator removes alice's job" "$B" "$(rj_as administrator rm "$B" 2>&1)"
check "its folder is gone" gone "$B"

# Several ids: each one reported, 255 if any failed.
C=$(rj start /bin/true)
D=$(rj start /bin/true)
wait_end "$C" && wait_end "$D"
rj rm "$C" "$UNKNOWN" "$R" "$D" >"$RJ_TMP/rm.out" 2>"$RJ_TMP/rm.err"
rc=$?
expect_eq "several ids: the removed ones on stdout" "$C $D" "$(tr '\n' ' ' <"$RJ_TMP/rm.out" | sed 's/ $//')"
expect_eq "one line on stderr per failure" 2 "$(wc -l <"$RJ_TMP/rm.err")"
expect_match "the unknown one NOT_FOUND" "$UNKNOWN not found.*NOT_FOUND" "$(cat "$RJ_TMP/rm.err")"
expect_match "the running one FAILED_PRECONDITION" "$R is still running.*FAILED_PRECONDITION" \
    "$(cat "$RJ_TMP/rm.err")"
expect_eq "exit 255" 255 "$rc"
rj stop --grace 0 "$R" >/dev/null
wait_end "$R"
expect_eq "once stopped, it can be removed" "$R" "$(rj rm "$R" 2>&1)"

# A stream reading a job while it is removed gets everything the output had, then ends OK.
SIZE=$((24 * 1048576))
S=$(rj start /bin/sh -c "head -c $SIZE /dev/zero")
wait_end "$S"
( rj stream "$S" 2>"$RJ_TMP/stream.err" | { sleep 2; wc -c; } >"$RJ_TMP/stream.n"
  echo "${PIPESTATUS[0]}" >"$RJ_TMP/stream.rc" ) &
SP=$!
sleep 0.7
expect_eq "the job is removed while a stream reads it" "$S" "$(rj rm "$S" 2>&1)"
check "its folder is gone while the stream reads" gone "$S"
wait "$SP"
expect_eq "the stream got every byte the output had" "$SIZE" "$(cat "$RJ_TMP/stream.n")"
expect_eq "and ended with exit 0" 0 "$(cat "$RJ_TMP/stream.rc")"
expect_eq "and no error" "" "$(cat "$RJ_TMP/stream.err")"
check "the server is alive" kill -0 "$RJ_SERVER_PID"

# A job by its name or a prefix of its id, as elsewhere.
N=$(rj start -j gone /bin/true)
P=$(rj start /bin/true)
wait_end "$N"
wait_end "$P"
expect_eq "rm by name" "$N" "$(rj rm gone 2>&1)"
expect_eq "rm by a unique id prefix" "$P" "$(rj rm "${P:0:13}" 2>&1)"
expect_match "rm of a name no job has: NOT_FOUND, exit 255" "no job has the id or name 'gone'.*NOT_FOUND.* 255" \
    "$({ rj rm gone 2>&1; echo " $?"; } | tr '\n' ' ')"

# --retain-ended: a job expired while the server was down goes at its start.
E=$(rj start /bin/true)
wait_end "$E"
rj_server_stop
sleep 1.2
rj_server_start --retain-ended 1s
check "--retain-ended 1s: a job that expired while the server was down is removed at start" \
    gone "$E"
out=$(rj status "$E" 2>&1)
expect_match "and is unknown" "NOT_FOUND" "$out"
F=$(rj start /bin/sh -c 'echo bye')
wait_end "$F"
check "an ended job is still there right after its end" test -e "$RJ_STATE/$F/status"
for _ in $(seq 50); do rj status "$F" >/dev/null 2>&1 || break; sleep 0.1; done
out=$(rj status "$F" 2>&1)
expect_match "--retain-ended 1s: removed about a second after its end" "NOT_FOUND" "$out"
check "with its folder" gone "$F"
rj_server_stop

# --max-state-bytes: over the cap the jobs that ended first go first; running jobs never.
rj_server_start --max-state-bytes 300K
KB=1024
G1=$(rj start /bin/sh -c "head -c $((200 * KB)) /dev/zero")
wait_end "$G1"
sleep 0.05
G2=$(rj start /bin/sh -c "head -c $((200 * KB)) /dev/zero")
wait_end "$G2"
sleep 0.05
G3=$(rj start /bin/sh -c "head -c $((200 * KB)) /dev/zero; sleep 60")
for _ in $(seq 50); do rj status "$G2" >/dev/null 2>&1 || break; sleep 0.1; done
expect_match "--max-state-bytes 300K: the first ended job is removed" "NOT_FOUND" \
    "$(rj status "$G1" 2>&1)"
expect_match "then the second" "NOT_FOUND" "$(rj status "$G2" 2>&1)"
check "the running job stays, though over the cap alone" quiet rj status "$G3"
rj stop --grace 0 "$G3" >/dev/null
rj_server_stop

# --max-user-output-bytes: a user whose jobs keep that much output starts nothing more until
# some go; other users are not held back.
RJ_STATE=$RJ_TMP/state-quota rj_server_start --max-user-output-bytes 100K
Q1=$(rj start /bin/sh -c "head -c $((150 * KB)) /dev/zero")
wait_end "$Q1"
out=$(rj start /bin/true 2>&1)
expect_match "over the per-user quota: Start is RESOURCE_EXHAUSTED, saying why" \
    "your jobs keep 150 KiB of output on this server, its per-user quota is 100 KiB: remove ended jobs .*\(RESOURCE_EXHAUSTED\)" \
    "$out"
check "another user still starts" quiet rj_as bob run /bin/true
rj rm "$Q1" >/dev/null
check "after rm the user starts again" quiet rj run /bin/true
rj_server_stop

# A state file system below its reserve (the larger of 1% and 4 MiB): Start is refused with the
# figures, RESOURCE_EXHAUSTED, and works again once there is room.
FS=$RJ_TMP/fs
mkdir -p "$FS"
if mount -t tmpfs -o size=16m,mode=0700 runjob-test-rm "$FS"; then
    trap 'rj_cleanup 2>/dev/null; umount "$FS" 2>/dev/null' EXIT
    RJ_STATE=$FS/state
    rj_server_start
    dd if=/dev/zero of="$FS/filler" bs=1M count=13 2>/dev/null
    out=$(rj start /bin/true 2>&1)
    rc=$?
    expect_match "Start below the reserve: RESOURCE_EXHAUSTED, with the figures" \
        "state file system has [0-9]+ MiB free, below its reserve of 4 MiB.*RESOURCE_EXHAUSTED" "$out"
    expect_eq "and exits 255" 255 "$rc"
    rm -f "$FS/filler"
    check "with room again, Start works" quiet rj start /bin/true
    rj_server_stop
    umount "$FS"
else
    fail "mount a 16 MiB tmpfs for the state directory"
fi
t_done
