#!/bin/bash
# The seccomp filter at work in a real job, for what needs no privilege and so has no other wall:
# io_uring (its operations are syscalls no filter sees), vsock sockets (not in the job's network
# namespace) and memfd_secret; Unix and IP sockets still work. The probe is the host's python3
# through ctypes (no compiler in a job); the same probe on the host, without the filter, says
# which of the answers the kernel alone would have given.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
    echo "SKIP: $(basename "$0") -- $PY is not installed (the probe runs in the job)"
    exit 0
fi
rj_setup

# Syscall numbers 425 (io_uring_setup) and 447 (memfd_secret) are the same on every arch since
# Linux 5.1's common table.
PROBE='
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def name(e):
    return errno.errorcode.get(e, str(e))
def sys(nr, *args):
    r = libc.syscall(nr, *args)
    if r >= 0:
        os.close(r)
        return "ok"
    return name(ctypes.get_errno())
def sock(domain, kind):
    try:
        socket.socket(domain, kind).close()
        return "ok"
    except OSError as e:
        return name(e.errno)
params = ctypes.create_string_buffer(120)
print("io_uring_setup", sys(425, 1, params))
print("memfd_secret", sys(447, 0))
print("vsock", sock(40, socket.SOCK_STREAM))
print("unix", sock(socket.AF_UNIX, socket.SOCK_STREAM))
print("inet", sock(socket.AF_INET, socket.SOCK_DGRAM))
'
host=$("$PY" -c "$PROBE" 2>&1)
echo "# without the filter, on the host: $(echo $host)"

rj_server_start --allow-host-network
for net in none host; do
    out=$(rj run --network "$net" "$PY" -c "$PROBE" 2>&1)
    expect_eq "network $net: the job's answers" \
        "$(printf 'io_uring_setup EPERM\nmemfd_secret ENOSYS\nvsock EPERM\nunix ok\ninet ok')" "$out"
done
# Where the host answers as the filter does, the job's answer proves nothing; say so.
for pair in "io_uring_setup EPERM" "memfd_secret ENOSYS" "vsock EPERM"; do
    printf '%s\n' "$host" | grep -qx "$pair" &&
        echo "# the host kernel answers '$pair' by itself: test_seccomp's program verdicts cover it"
done
t_done
