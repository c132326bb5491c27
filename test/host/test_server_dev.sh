#!/usr/bin/env bash
# A job's /dev is its own: the harmless nodes, a devpts instance of its own (its ptys are not
# the host's), an empty shm; none of the host's disks or other devices.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

expect_eq "ls /dev in a job is the minimal set" \
    "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero" \
    "$(rj_as alice run /bin/ls /dev 2>&1 | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the nodes work" "0000000000" \
    "$(rj_as alice run /bin/sh -c 'head -c 5 /dev/zero | od -An -tx1 | tr -d " \n"; echo x >/dev/null' 2>&1 | cut -c1-10)"
out=$(rj_as alice run /bin/sh -c 'ls /dev/sda /dev/vda /dev/mem /dev/kmsg 2>&1' 2>&1)
expect_match "no host disks, /dev/mem or /dev/kmsg" '^(ls: cannot access.*No such file or directory.?\s*)+$' "$out"

# Every job's /dev (but its pts and shm) is one tree, built once: nobody may change it.
expect_eq "/dev is read-only, its pts and shm are not" "ro rw rw" \
    "$(rj_as alice run /bin/sh -c 'for m in /dev /dev/pts /dev/shm; do
        awk -v m=$m '"'"'$5 == m { split($6, o, ","); print o[1] }'"'"' /proc/self/mountinfo; done' 2>&1 |
        tr '\n' ' ' | sed 's/ $//')"
expect_match "nothing can be made in /dev" "Read-only file system" \
    "$(rj_as alice run /bin/sh -c 'mkdir /dev/x; : > /dev/x' 2>&1)"
expect_eq "shm takes a file, null a write" "ok" \
    "$(rj_as alice run /bin/sh -c 'echo a > /dev/shm/f && echo b > /dev/null && echo ok' 2>&1)"
expect_eq "one job's shm is not the next one's" "" \
    "$(rj_as alice run /bin/ls /dev/shm 2>&1)"
if command -v python3 >/dev/null; then
    HOST_PTS=$(ls /dev/pts | wc -l)
    ID=$(rj_as alice start /usr/bin/python3 -c '
import os, pty, time
ptys = [pty.openpty() for _ in range(20)]
print(os.ttyname(ptys[-1][1]), flush=True)
time.sleep(3)')
    sleep 1.5
    DURING=$(ls /dev/pts | wc -l)
    expect_eq "20 ptys in a job add none to the host's /dev/pts" "$HOST_PTS" "$DURING"
    expect_eq "the job's ptys are in its own devpts" "/dev/pts/19" "$(rj_as alice stream "$ID" 2>&1)"
else
    echo "SKIP: pty checks -- python3 is not installed (the job's pty opener)"
fi
t_done
