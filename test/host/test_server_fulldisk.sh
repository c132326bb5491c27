#!/bin/bash
# A full disk: the state dir on a 16 MiB tmpfs fills up. The job that fills
# it keeps running and ends with its own exit code; its output is marked truncated (status,
# the final status of a stream, `runjob run`), readers get exactly the bytes that were kept;
# the server does not crash; a Start on the full disk is refused cleanly; record writes that
# fail for lack of space leave the existing records whole; after a restart everything reads
# back as it was; Starts need the state's reserve free, which runjob rm gives back.
. "$(dirname "$0")/../lib.sh"
rj_setup
FS=$RJ_TMP/fs
mkdir -p "$FS"
mount -t tmpfs -o size=16m,mode=0700 runjob-test "$FS" || { fail "mount a 16 MiB tmpfs"; exit 1; }
PUB=$(rj_pubdir)
chmod 755 "$PUB"
trap 'rj_cleanup 2>/dev/null; umount "$FS"; rm -rf "$RJ_TMP" "$PUB"' EXIT
RJ_STATE=$FS/state
rj_server_start
MIB=1048576

wait_end() { # JOB: until it is no longer running (at most 60 s)
    for _ in $(seq 600); do
        rj status -o json "$1" 2>/dev/null | grep -q '"is_running":false' && return 0
        sleep 0.1
    done
    return 1
}
json_num() { grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }

A=$(rj start /bin/sh -c 'echo a; exit 3')
wait_end "$A"
# H waits (its output and record made) until the disk is full, then writes 1 MiB and exits 9.
H=$(rj start /bin/sh -c "echo h-before; while [ ! -e $PUB/go ]; do sleep 0.05; done
    head -c $MIB /dev/zero; exit 9")

# F writes 32 MiB into 16 MiB, then keeps running and writing for a while, then exits 7.
rj run /bin/sh -c 'head -c 33554432 /dev/zero; i=0; while [ $i -lt 50 ]; do
    echo more; echo more >&2; i=$((i+1)); sleep 0.02; done; exit 7' >"$RJ_TMP/run.out" 2>"$RJ_TMP/run.err"
rc=$?
expect_eq "the job that fills the disk keeps running and exits 7" 7 "$rc"
F=$(rj list -o json | grep -o '"id":"[^"]*","command":"/bin/sh","args":\["-c","head -c 33554432' |
    cut -d'"' -f4)
st=$(rj status -o json "$F" 2>&1)
expect_match "its status: exited 7" '"state":"exited".*"exit_code":7' "$st"
expect_match "its status: output truncated" '"output_truncated":true' "$st"
kept=$(json_num output_bytes <<<"$st")
echo "# full disk: kept ${kept:-?} of 33554432 bytes on a 16 MiB tmpfs; $(df -k "$FS" | awk 'NR==2{print $4}') KiB left"
[ "${kept:-0}" -ge $MIB ] && [ "$kept" -lt $((16 * MIB)) ] && ok "it kept what fitted" ||
    fail "it kept what fitted" "${kept:-?} bytes"
expect_eq "run printed exactly the kept bytes" "$(head -c "$kept" /dev/zero | sha256sum)" \
    "$(sha256sum <"$RJ_TMP/run.out")"
expect_match "run says the output was truncated (from the stream's final status)" \
    "job $F: output truncated" "$(cat "$RJ_TMP/run.err")"
expect_eq "a stream after the end gets the same bytes, and ends" \
    "$(head -c "$kept" /dev/zero | sha256sum)" "$(timeout 30 "$RUNJOB" stream -H 127.0.0.1 \
    -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" \
    "$F" 2>/dev/null | sha256sum)"
out=$(rj list 2>&1)
expect_match "list shows it truncated" "$F .*truncated" "$out"
check "the server still answers" rj ping

# Fill what is left to the last byte; then a Start is refused, and H's writes fail. The server
# keeps a few job folders made ahead (their records' room allocated, server-internal.h
# PREPARED_SLOTS = 2): Starts that take one of those still run (like any running job, their
# output is cut where the disk is full), and the records those short jobs leave behind free a
# little room that a following Start may use; but each job keeps some, so Starts are soon
# refused.
dd if=/dev/zero of="$FS/filler" bs=4k >/dev/null 2>&1
for i in $(seq 10); do
    out=$(rj start /bin/true 2>&1)
    rc=$?
    [ "$rc" -ne 0 ] && break
done
[ "$rc" -ne 0 ] && ok "Start on a full disk fails (attempt $i)" ||
    fail "Start on a full disk fails (within 10 attempts)" "$out"
expect_match "with RESOURCE_EXHAUSTED, in plain words" 'RESOURCE_EXHAUSTED' "$out"
touch "$PUB/go"
wait_end "$H"
st=$(rj status -o json "$H" 2>&1)
expect_match "a job ending on a full disk: status exited 9" \
    '"state":"exited".*"exit_code":9' "$st"
expect_match "its status: output truncated" '"output_truncated":true' "$st"
kept_h=$(json_num output_bytes <<<"$st")
[ "${kept_h:-0}" -ge 9 ] && [ "$kept_h" -lt $((MIB + 9)) ] && ok "it kept what fitted (${kept_h:-?} bytes)" ||
    fail "it kept what fitted" "${kept_h:-?} bytes"
expect_eq "its output starts with what it wrote before" "h-before" "$(rj stream "$H" 2>&1 | head -1)"
expect_eq "the first job is untouched" "exited 3 a" \
    "$(rj status "$A" | awk 'NR==2{print $3, $4}') $(rj stream "$A")"
kill -0 "$RJ_SERVER_PID" && ok "the server is alive" || fail "the server is alive"
bad=0
for d in "$RJ_STATE"/*/; do
    # A folder made ahead that no Start took holds no record yet (and only that).
    [ -e "$d/status" ] || [ -n "$(ls "$d" | grep -vxE 'status.tmp|status.spare|output')" ] ||
        continue
    grep -q '^output_truncated=' "$d/status" 2>/dev/null || { bad=$((bad + 1)); echo "# bad record: $d"; }
done
expect_eq "every job folder holds a whole record (none left by the refused Start)" 0 "$bad"

# Restart on the still-full disk: every job reads back as it ended.
rj_server_stop
expect_eq "the server shuts down cleanly" 0 "$?"
rj_server_start
out=$(rj list 2>&1)
expect_match "after restart: the first job exited 3" "$A .*exited +3" "$out"
expect_match "after restart: the filling job exited 7, truncated" "$F .*exited +7 .*truncated" "$out"
expect_match "after restart: the job that ended on the full disk exited 9" "$H .*exited +9" "$out"
expect_eq "after restart: the first job's output" "a" "$(rj stream "$A")"
expect_eq "after restart: the kept bytes" "$(head -c "$kept" /dev/zero | sha256sum)" \
    "$(rj stream "$F" 2>/dev/null | sha256sum)"
rm -f "$FS/filler"
# Starts keep a reserve (the larger of 1% and 4 MiB) free: the filler's few KiB are not enough,
# removing the job that filled the disk is.
out=$(rj start /bin/true 2>&1)
expect_match "a few KiB free is below the reserve: RESOURCE_EXHAUSTED" \
    "below its reserve.*RESOURCE_EXHAUSTED" "$out"
check "runjob rm of the job that filled the disk" rj rm "$F"
for _ in $(seq 50); do [ -e "$RJ_STATE/$F" ] || [ -e "$RJ_STATE/.rm-$F" ] || break; sleep 0.1; done
check "with room again, jobs start" rj run /bin/true
t_done
