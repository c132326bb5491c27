#!/bin/bash
# Jobs do not share the directories anyone may write to: /tmp, /var/tmp, /dev/shm and /run/lock
# are empty and a job's own, nothing written there reaches the host or outlives the job, and a
# job without a network does not see the host's /run (its sockets). Both jobs run as nobody, as
# every job does by default: file permissions alone would not keep them apart.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --allow-host-network

PUB=$(rj_pubdir)
chmod 755 "$PUB"
trap 'rm -rf "$PUB"; rj_cleanup' EXIT
TAG=rj-private-$$
# A host file and a host socket in /tmp, as another user's program would leave them.
echo host-secret >"/tmp/$TAG.host"
chmod 644 "/tmp/$TAG.host"
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "/tmp/$TAG.sock"
chmod 666 "/tmp/$TAG.sock"
trap 'rm -rf "$PUB" "/tmp/$TAG.host" "/tmp/$TAG.sock" "/dev/shm/$TAG" "/var/tmp/$TAG"; rj_cleanup' EXIT

# Bob's job leaves files in every such directory and waits; alice's job runs meanwhile.
B=$(rj_as bob start /bin/sh -c "for d in /tmp /var/tmp /dev/shm /run/lock; do echo bob-secret >\$d/$TAG || echo cannot-write-\$d; done; echo written; while [ ! -e $PUB/go ]; do sleep 0.05; done")
expect_match "bob's job starts" '^[0-9a-f-]{36}$' "$B"
for _ in $(seq 100); do
    rj_as bob stream --no-follow "$B" 2>/dev/null | grep -q written && break
    sleep 0.1
done
out=$(rj_as bob stream --no-follow "$B" 2>&1)
expect_eq "bob's job could write in each directory" "written" "$out"

out=$(rj_as alice run /bin/sh -c "for d in /tmp /var/tmp /dev/shm /run/lock; do cat \$d/$TAG 2>/dev/null && echo seen-\$d; rm -f \$d/$TAG 2>/dev/null; done; ls -A /tmp /var/tmp /dev/shm; echo done" 2>&1)
expect_eq "alice's job sees nothing of bob's and finds the directories empty" \
    "$(printf '/dev/shm:\n\n/tmp:\n\n/var/tmp:\ndone')" "$out"

# The host's side: bob's files are not there, and the host's own file was never visible.
for d in /tmp /var/tmp /dev/shm /run/lock; do
    [ -e "$d/$TAG" ] && fail "nothing of a job's reaches the host's $d" "found $d/$TAG" ||
        ok "nothing of a job's reaches the host's $d"
done
out=$(rj run /bin/sh -c "cat /tmp/$TAG.host 2>&1; ls /tmp/$TAG.sock 2>&1; echo end")
expect_match "a job does not see the host's /tmp" "No such file.*No such file.*end" "$(echo $out)"

# Without a network the host's /run (sockets, pid files) is not there; /run/lock is.
out=$(rj run /bin/sh -c 'ls -A /run; test -w /run/lock && echo lock-writable')
expect_eq "a job without a network has an empty /run of its own" "$(printf 'lock\nlock-writable')" "$out"
if [ -n "$(ls -A /run 2>/dev/null)" ]; then
    first=$(ls -A /run | head -n 1)
    out=$(rj run --network host /bin/sh -c "test -e /run/$first && echo host-run-seen")
    expect_eq "a job with the host's network keeps the host's /run" "host-run-seen" "$out"
fi

# Files go with the job: bob's job ends, its directories with it.
touch "$PUB/go"
rj_as bob stream "$B" >/dev/null 2>&1
out=$(rj_as bob run /bin/sh -c "ls -A /tmp /dev/shm; echo end")
expect_eq "a later job of the same user starts empty again" "$(printf '/dev/shm:\n\n/tmp:\nend')" "$out"

# What a job writes to /tmp counts against its memory limit (tmpfs pages are the writer's).
# Where swap can take what is over the limit, nothing ends the job: that host cannot tell.
swap=$(rj_swap_escapes_memory_limits)
if [ -n "$swap" ]; then
    echo "SKIP: filling /tmp past the memory limit ends the job -- $swap"
else
    out=$(rj run --memory 32M /bin/sh -c 'head -c 64M /dev/zero > /tmp/fill; echo survived' 2>&1)
    rc=$?
    [ "$rc" -ne 0 ] && ! printf '%s' "$out" | grep -q survived &&
        ok "filling /tmp past the memory limit ends the job" ||
        fail "filling /tmp past the memory limit ends the job" "rc $rc: $out"
fi
t_done
