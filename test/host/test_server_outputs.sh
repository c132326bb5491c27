#!/bin/bash
# Awkward output: a job that closes stdout (or both streams) and keeps
# running, a job making 100 000 one-byte writes, a job writing binary bytes (every byte value,
# NULs, invalid UTF-8): each stream comes back byte-exact, to a follower attached from the
# start and to a reader after the end, and the job's status is right.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start
# Files the jobs read and the flag that releases them (jobs see the host's /tmp, as nobody).
PUB=$(rj_pubdir)
chmod 755 "$PUB"
trap 'rm -rf "$PUB"; rj_cleanup' EXIT

sha() { sha256sum | cut -d' ' -f1; }
wait_end() { # JOB: until it is no longer running (at most 60 s)
    for _ in $(seq 600); do
        rj status -o json "$1" 2>/dev/null | grep -q '"is_running":false' && return 0
        sleep 0.1
    done
    return 1
}

# --- Closes stdout, keeps running, writes on stderr, exits 4.
J=$(rj start /bin/sh -c 'printf out1; exec 1>&-; sleep 1; echo err-after-close >&2; sleep 0.5; exit 4')
sleep 0.5
out=$(rj status "$J" 2>&1)
expect_match "closed stdout: the job still runs" ' running ' "$out"
followed=$(rj stream "$J" 2>&1)
expect_eq "closed stdout: the follower gets both streams, to the end" "out1err-after-close" \
    "$(tr -d '\n' <<<"$followed")"
expect_eq "closed stdout: stdout alone" "out1" "$(rj stream -s stdout "$J")"
expect_eq "closed stdout: stderr alone" "err-after-close" "$(rj stream -s stderr "$J" 2>&1)"
out=$(rj status -o json "$J" 2>&1)
expect_match "closed stdout: exited 4" '"state":"exited".*"exit_code":4' "$out"

# --- Closes both streams and keeps running: the job is not finished by the EOFs.
J=$(rj start /bin/sh -c "echo bye; exec >&- 2>&-; while [ ! -e $PUB/go1 ]; do sleep 0.05; done; exit 5")
sleep 1
out=$(rj status "$J" 2>&1)
expect_match "both closed: the job still runs" ' running ' "$out"
touch "$PUB/go1"
wait_end "$J"
out=$(rj status -o json "$J" 2>&1)
expect_match "both closed: exited 5 when it ended" '"state":"exited".*"exit_code":5' "$out"
expect_eq "both closed: its output" "bye" "$(rj stream "$J" 2>&1)"

# --- 100 000 one-byte writes, alternating streams unevenly, every byte value.
cat >"$PUB/tiny.py" <<'EOF'
import os, sys
while not os.path.exists(sys.argv[1]):
    os.sched_yield()
for i in range(100000):
    os.write(2 if i % 3 == 0 else 1, bytes([(i * 7) % 256]))
EOF
python3 "$PUB/tiny.py" /dev/null >"$RJ_TMP/tiny.out" 2>"$RJ_TMP/tiny.err"
J=$(rj start /usr/bin/python3 "$PUB/tiny.py" "$PUB/go2")
rj stream -s stdout "$J" >"$RJ_TMP/f.out" 2>/dev/null &
f1=$!
rj stream -s stderr "$J" >"$RJ_TMP/f.err" 2>"$RJ_TMP/f.msgs" &  # one stream by name: to stdout
f2=$!
rj stream "$J" >"$RJ_TMP/f.all1" 2>"$RJ_TMP/f.all2" &
f3=$!
sleep 1 # the followers attach (a late one still gets everything: checked below)
touch "$PUB/go2"
wait "$f1" "$f2" "$f3"
wait_end "$J"
out=$(rj status -o json "$J" 2>&1)
expect_match "tiny writes: exited 0" '"state":"exited".*"exit_code":0' "$out"
expect_match "tiny writes: 100000 bytes recorded" '"output_bytes":100000,' "$out"
expect_eq "tiny writes: stdout follower byte-exact" "$(sha <"$RJ_TMP/tiny.out")" "$(sha <"$RJ_TMP/f.out")"
expect_eq "tiny writes: stderr follower byte-exact" "$(sha <"$RJ_TMP/tiny.err")" "$(sha <"$RJ_TMP/f.err")"
expect_eq "tiny writes: an all-streams follower splits them back exactly" \
    "$(cat "$RJ_TMP/tiny.out" "$RJ_TMP/tiny.err" | sha)" "$(cat "$RJ_TMP/f.all1" "$RJ_TMP/f.all2" | sha)"
expect_eq "tiny writes: stdout after the end" "$(sha <"$RJ_TMP/tiny.out")" \
    "$(rj stream -s stdout "$J" | sha)"
expect_eq "tiny writes: resume at an offset" "$(tail -c +12346 "$RJ_TMP/tiny.out" | sha)" \
    "$(rj stream -s stdout --offset 12345 "$J" | sha)"

# --- Binary: every byte value in every position, then 4 MiB of random bytes, on both streams.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 256 + b"\0\r\n\xff\xfe\xc0\x80")' \
    >"$PUB/blob1"
head -c 4194304 /dev/urandom >"$PUB/blob2"
chmod 644 "$PUB/blob1" "$PUB/blob2"
J=$(rj start /bin/sh -c "while [ ! -e $PUB/go3 ]; do sleep 0.05; done
    cat $PUB/blob1; cat $PUB/blob2 >&2; cat $PUB/blob2; cat $PUB/blob1 >&2")
rj stream "$J" >"$RJ_TMP/b.out" 2>"$RJ_TMP/b.err" &
f1=$!
sleep 1
touch "$PUB/go3"
wait "$f1"
expect_eq "binary: stdout follower byte-exact" "$(cat "$PUB/blob1" "$PUB/blob2" | sha)" \
    "$(sha <"$RJ_TMP/b.out")"
expect_eq "binary: stderr follower byte-exact" "$(cat "$PUB/blob2" "$PUB/blob1" | sha)" \
    "$(sha <"$RJ_TMP/b.err")"
expect_eq "binary: stderr after the end" "$(cat "$PUB/blob2" "$PUB/blob1" | sha)" \
    "$(rj stream -s stderr "$J" 2>&1 | sha)"
n1=$(stat -c %s "$PUB/blob1")
expect_eq "binary: resume inside the random part" "$(tail -c +1001 "$PUB/blob2" | sha)" \
    "$(rj stream -s stdout --offset $((n1 + 1000)) "$J" | sha)"
t_done
