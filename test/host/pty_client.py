#!/usr/bin/env python3
"""Runs a client command in a pseudo-terminal of a given size, as a user at a terminal would,
for test_client_input.sh: types each --type once the output shows its --after (pairs, in
order; after the text seen last), resizes the
terminal once the output shows --resize-after, and reports on stdout, after the command's
output, its exit status and whether the terminal's modes were left as they were found.

  pty_client.py ROWS COLS [--after TEXT --type TEXT] [--resize-after TEXT --resize R C]
                [--timeout S] -- CMD...
"""
import argparse
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

ap = argparse.ArgumentParser()
ap.add_argument("rows", type=int)
ap.add_argument("cols", type=int)
ap.add_argument("--after", action="append", default=[])
ap.add_argument("--type", action="append", default=[])
ap.add_argument("--resize-after", default=None)
ap.add_argument("--resize", nargs=2, type=int, default=None)
ap.add_argument("--timeout", type=float, default=60)
sep = sys.argv.index("--")
a = ap.parse_args(sys.argv[1:sep])
cmd = sys.argv[sep + 1 :]


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


pid, master = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
set_size(master, a.rows, a.cols)
before = termios.tcgetattr(master)  # the slave's modes, as the client finds them
out = b""
step = 0  # the next --after/--type pair
seen = 0  # where in out the next --after is looked for
resized = False
deadline = time.monotonic() + a.timeout
status = None
while time.monotonic() < deadline:
    r, _, _ = select.select([master], [], [], 0.1)
    if r:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    if step < len(a.after) and a.after[step].encode() in out[seen:]:
        seen = out.index(a.after[step].encode(), seen) + len(a.after[step])
        os.write(master, a.type[step].encode().decode("unicode_escape").encode("latin-1"))
        step += 1
    if a.resize_after is not None and not resized and a.resize_after.encode() in out:
        set_size(master, *a.resize)  # the kernel sends SIGWINCH to the client
        resized = True
    wpid, st = os.waitpid(pid, os.WNOHANG)
    if wpid == pid:
        status = st
        # what is left in the terminal
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        break
while status is None and time.monotonic() < deadline:
    wpid, st = os.waitpid(pid, os.WNOHANG)
    if wpid == pid:
        status = st
    else:
        time.sleep(0.05)
after = termios.tcgetattr(master)
if status is None:
    os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    print("TIMEOUT")
sys.stdout.write(out.decode("utf-8", "replace").replace("\r", ""))
print("\nEXIT %d" % (os.waitstatus_to_exitcode(status)))
print("MODES %s" % ("restored" if before == after else "changed"))
