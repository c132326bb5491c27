#!/bin/bash
# Past --max-output-bytes the server keeps the first and the newest parts of a job's output
# (--keep-output ends, the default) or the first only (--keep-output head): what status says,
# the note a stream prints where bytes were dropped, the room on disk, and a restart.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --max-output-bytes 256K
cd "$RJ_TMP" || exit 1

id=$(rj start -j many /bin/sh -c 'seq 1 300000; echo done >&2')
for _ in $(seq 100); do rj status many | grep -q exited && break; sleep 0.1; done
out=$(rj stream --no-follow -s stdout many 2>"$RJ_TMP/note")
expect_eq "the head is kept" "1" "$(printf '%s\n' "$out" | head -1)"
expect_eq "the newest line is kept" "300000" "$(printf '%s\n' "$out" | tail -1)"
expect_match "the stream notes where bytes were dropped, on stderr" \
    "job $id: [0-9]+ bytes of its output were dropped here" "$(cat "$RJ_TMP/note")"
expect_eq "... once" 1 "$(wc -l <"$RJ_TMP/note")"
st=$(rj status -o json many)
expect_match "status counts the dropped bytes" '"output_dropped_bytes": ?[1-9][0-9]*' "$st"
expect_match "... and the output is not truncated" '"output_truncated": ?false' "$st"
expect_match "the table's FLAGS says dropped" "many .*dropped" "$(rj status many)"
expect_eq "stderr's line is there too" "done" "$(rj stream --no-follow -s stderr many 2>/dev/null)"
kb=$(du -k "$RJ_STATE/$id/output" | cut -f1)
if [ "$kb" -le 512 ]; then ok "the output takes about the cap on disk (${kb} KiB)"; else
    fail "the output takes about the cap on disk" "${kb} KiB"; fi
expect_eq "--tail 1 is the newest line" "300000" "$(rj stream --tail 1 -s stdout many)"

rj_server_stop
rj_server_start --max-output-bytes 256K
out=$(rj stream --no-follow -s stdout many 2>"$RJ_TMP/note")
expect_eq "after a restart: the same head" "1" "$(printf '%s\n' "$out" | head -1)"
expect_eq "after a restart: the same newest line" "300000" "$(printf '%s\n' "$out" | tail -1)"
expect_match "after a restart: the same note" "bytes of its output were dropped here" "$(cat "$RJ_TMP/note")"

rj_server_stop
rj_server_start --max-output-bytes 256K --keep-output head
rj start -j head /bin/sh -c 'seq 1 300000' >/dev/null
for _ in $(seq 100); do rj status head | grep -q exited && break; sleep 0.1; done
out=$(rj stream --no-follow head 2>"$RJ_TMP/note")
expect_eq "--keep-output head: the first line" "1" "$(printf '%s\n' "$out" | head -1)"
expect_match "--keep-output head: stream says the output is truncated, on stderr" \
    "output truncated: the server kept only the first 262144 bytes" "$(cat "$RJ_TMP/note")"
rj stream head >/dev/null 2>"$RJ_TMP/note"
expect_match "... followed too" "output truncated: the server kept only the first" "$(cat "$RJ_TMP/note")"
expect_match "--keep-output head: the output is truncated" '"output_truncated": ?true' "$(rj status -o json head)"
expect_eq "--keep-output head: 256 KiB kept" 262144 "$(printf '%s' "$out" | wc -c)"
expect_eq "serve refuses --keep-output middle" 2 \
    "$("$RUNJOB" serve --keep-output middle >/dev/null 2>&1; echo $?)"
t_done
