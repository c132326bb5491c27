#!/usr/bin/env bash
# Each job runs as a uid (and gid) of its own from --job-uid-range, so that the kernel's per-uid
# limits (inotify instances, RLIMIT_NPROC, pipe pages, ...) are each job's; --job-user keeps
# one fixed user for every job.
. "$(dirname "$0")/../lib.sh"
rj_setup

# in_range UID: whether UID is one of the default range, 1879048192..1879113727.
in_range() {
    case $1 in '' | *[!0-9]*) return 1 ;; esac
    [ "$1" -ge 1879048192 ] && [ "$1" -le 1879113727 ]
}
rj_server_start

A=$(rj_as alice start /bin/sh -c 'id -u; id -g; sleep 5')
B=$(rj_as bob start /bin/sh -c 'id -u; sleep 5')
C=$(rj_as alice start /bin/sh -c 'id -u; sleep 5')
sleep 0.5
UA=$(rj_as alice stream -s stdout "$A" 2>&1 | head -1)
GA=$(rj_as alice stream -s stdout "$A" 2>&1 | sed -n 2p)
UB=$(rj_as bob stream -s stdout "$B" 2>&1 | head -1)
UC=$(rj_as alice stream -s stdout "$C" 2>&1 | head -1)
check "a job runs in the default range ($UA)" in_range "$UA"
expect_eq "its gid is its uid" "$UA" "$GA"
if [ "$UA" != "$UB" ] && [ "$UA" != "$UC" ] && [ "$UB" != "$UC" ]; then
    ok "three concurrent jobs, two users: three uids ($UA $UB $UC)"
else
    fail "three concurrent jobs, two users: three uids" "$UA $UB $UC"
fi
N=$(rj_as alice run /bin/id -u 2>&1)
check "a later job runs in the range too ($N)" in_range "$N"
[ "$N" != "$UA" ] && ok "the next job gets a fresh uid ($N)" || fail "the next job gets a fresh uid" "$N again"

# inotify instances are counted per uid (fs.inotify.max_user_instances): one job holding all
# of them must not starve another's.
MAX=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null)
if command -v python3 >/dev/null && [ -n "$MAX" ] && [ "$MAX" -le 4096 ]; then
    HOG=$(rj_as alice start /usr/bin/python3 -c "
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
fds = [libc.inotify_init1(0) for _ in range($MAX + 1)]
print(sum(1 for f in fds if f >= 0), flush=True)
time.sleep(4)")
    sleep 1.5
    expect_eq "alice's job takes every inotify instance its uid may have" "$MAX" \
        "$(timeout 5 "$RUNJOB" stream -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
            --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" \
            --no-follow "$HOG" 2>&1 | head -1)"
    out=$(rj_as bob run /usr/bin/python3 -c "
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print('ok' if fd >= 0 else os.strerror(ctypes.get_errno()))" 2>&1)
    expect_eq "meanwhile bob's job gets one" "ok" "$out"
else
    echo "SKIP: inotify check -- needs python3 in jobs and fs.inotify.max_user_instances <= 4096"
fi
rj_server_stop

# --job-user: one fixed user for every job, as before.
RJ_PORT=
RJ_STATE=$RJ_TMP/state-fixed
rj_server_start --job-user nobody
expect_eq "--job-user nobody runs jobs as 65534" "65534 65534" "$(rj_as alice run /bin/sh -c 'echo $(id -u) $(id -g)' 2>&1)"
rj_server_stop
t_done
