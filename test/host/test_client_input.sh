#!/bin/bash
# Interactive jobs: run -i passes our stdin (EOF included), run -t gives the job a terminal of
# our terminal's size (resized on SIGWINCH, raw mode restored, exit codes passed, Ctrl-C as a
# character, `~.` to disconnect), attach joins a job started with input (one writer at a time,
# the owner or an administrator), a job that never reads its stdin holds the server's memory
# to a small bound whatever the client sends, and every job has a session of its own (no
# controlling terminal but its own).
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --stop-grace 1s
cd "$RJ_TMP" || exit 1
PTY="python3 $RJ_ROOT/test/host/pty_client.py"
CLIENT=("$RUNJOB" run -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem"
    --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem")
ATTACH=("${CLIENT[@]}")
ATTACH[1]=attach

# ---- -i: a pipe
expect_eq "run -i: our stdin is the job's (wc -l counts 2 lines)" 2 "$(printf 'a\nb\n' | rj run -i /usr/bin/wc -l)"
head -c 3000000 /dev/urandom >"$RJ_TMP/blob"
expect_eq "run -i: 3 MB through the job's stdin arrive whole" "$(sha256sum <"$RJ_TMP/blob")" \
    "$(rj run -i /usr/bin/sha256sum <"$RJ_TMP/blob")"
out=$(rj run -i /bin/sh -c 'read x; echo "got $x"; exit 4' <<<"hello" 2>&1)
rc=$?
expect_eq "run -i: the job reads a line and its exit code comes back" "got hello/4" "$out/$rc"
expect_eq "run -i with an empty stdin: the job reads EOF at once" 0 "$(rj run -i /usr/bin/wc -c </dev/null)"
out=$(rj run /bin/sh -c 'cat; echo done' <<<"not passed" 2>/dev/null)
expect_eq "run without -i: the job reads /dev/null" "done" "$out"
out=$(rj run /bin/ls -t / 2>&1 >/dev/null)
expect_eq "-t after the command is the command's (ls -t)" "" "$out"
out=$(yes | rj run -i /usr/bin/head -n 3)
expect_eq "run -i: a job that stops reading ends normally (yes | head)" "y
y
y" "$out"
id=$(rj start -i /bin/cat)
expect_match "status -o json says the job's input, in words" '"input": ?"pipe"' "$(rj status -o json "$id")"
rj stop "$id" >/dev/null 2>&1
# start -i -f follows a job that reads: our stdin is its, as run -i's (not a wait forever).
out=$(printf 'zz\n' | timeout 20 "$RUNJOB" start -H 127.0.0.1 -P "$RJ_PORT" \
    --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" --client-cert-path "$RJ_CERTS/alice-cert.pem" \
    --client-key-path "$RJ_CERTS/alice-key.pem" -i -f /bin/cat 2>/dev/null)
expect_eq "start -i -f: our stdin is the job's, EOF included" "zz/0" "$out/$?"

# ---- -t: a terminal
out=$($PTY 33 101 --resize-after READY --resize 40 120 -- "${CLIENT[@]}" -t /bin/sh -c \
    'tty; stty size; trap "stty size; exit 7" WINCH; echo READY; while :; do sleep 0.1; done')
expect_match "run -t: the job's stdin is a terminal of its own devpts" "^/dev/pts/[0-9]+" "$out"
expect_match "run -t: the terminal has the client's size" "33 101" "$out"
expect_match "run -t: a resize reaches the job (SIGWINCH, new size)" "40 120" "$out"
expect_match "run -t: the job's exit code passes" "EXIT 7" "$out"
expect_match "run -t: the client's terminal is left as it was found" "MODES restored" "$out"
out=$($PTY 30 90 --after '$ ' --type 'echo typed; exit 5\r' -- "${CLIENT[@]}" -t /bin/sh -i)
expect_match "run -t: what is typed reaches an interactive shell" "typed" "$out"
expect_match "run -t: the shell's exit code passes" "EXIT 5" "$out"
out=$($PTY 30 90 --after READY --type '\x03' -- "${CLIENT[@]}" -t /bin/sh -c \
    'trap "echo got INT; exit 9" INT; echo READY; while :; do sleep 0.1; done')
expect_match "run -t: Ctrl-C reaches the job as the terminal's interrupt" "got INT" "$out"
expect_match "run -t: ... and its exit code passes" "EXIT 9" "$out"
out=$($PTY 30 90 --after READY --type '\r~.' -- "${CLIENT[@]}" -t -j escaped /bin/sh -c 'echo READY; sleep 100')
expect_match "run -t: ~. at a line's start disconnects, as ssh" "disconnected \(~\.\)" "$out"
expect_match "run -t: ... with 255, as ssh" "EXIT 255" "$out"
expect_match "run -t: ... and the terminal restored" "MODES restored" "$out"
for _ in $(seq 50); do
    st=$(rj list -o json 2>/dev/null | grep -c '"state": *"running"')
    [ "$st" = 0 ] && break
    sleep 0.1
done
expect_eq "run -t: the disconnected job is stopped (run is tied to its client)" 0 "$st"
out=$(TERM=vt220 $PTY 30 90 -- "${CLIENT[@]}" -t /bin/sh -c 'echo "term=$TERM"')
expect_match "run -t: the job's TERM is the client's (as ssh -t sends it)" "term=vt220" "$out"
out=$(TERM=vt220 $PTY 30 90 -- "${CLIENT[@]}" -t --env TERM=dumb /bin/sh -c 'echo "term=$TERM"')
expect_match "run -t: ... unless --env says otherwise" "term=dumb" "$out"
out=$(rj run -t /bin/true </dev/null 2>&1)
rc=$?
expect_match "run -t without a terminal is refused, saying why" "needs a terminal on stdin" "$out"
expect_eq "... as a usage error (2)" 2 "$rc"
id=$(rj start -t /bin/sh -c 'echo in-the-log; exit 3')
for _ in $(seq 50); do rj status "$id" 2>/dev/null | grep -q exited && break; sleep 0.1; done
expect_eq "a terminal job's output is recorded like any job's (stream after its end)" \
    "in-the-log" "$(rj stream "$id" | tr -d '\r')"

# ---- attach
id=$(rj start -i -j cat1 /bin/cat)
mkfifo "$RJ_TMP/in1"
rj attach cat1 <"$RJ_TMP/in1" >"$RJ_TMP/att1.out" 2>&1 &
att=$!
RJ_PIDS+=("$att")
exec 7>"$RJ_TMP/in1"
echo "first line" >&7
for _ in $(seq 50); do grep -q "first line" "$RJ_TMP/att1.out" && break; sleep 0.1; done
expect_eq "attach: our input reaches the job and its output comes back" "first line" "$(cat "$RJ_TMP/att1.out")"
out=$(echo x | rj attach "$id" 2>&1)
expect_match "attach: a second writer is refused (one at a time)" "another writer.*FAILED_PRECONDITION" "$out"
out=$(echo x | rj_as bob attach "$id" 2>&1)
expect_match "attach: another user's job is not found" "NOT_FOUND" "$out"
exec 7>&-
wait "$att"
rc=$?
expect_eq "attach: our EOF closes the job's stdin, cat ends, exit code 0" 0 "$rc"
expect_match "the server's log names who wrote to the job's stdin" "job $id: alice wrote 11 bytes to its stdin" "$(cat "$RJ_SERVER_LOG")"
id=$(rj_as bob start -i /bin/cat)
out=$(echo "from the admin" | rj_as administrator attach "$id" 2>&1)
expect_eq "attach: an administrator may write to another user's job" "from the admin" "$out"
out=$(echo x | rj attach "$id" 2>&1)
expect_match "attach: an ended job says so" "has ended|NOT_FOUND" "$out"
id=$(rj start /bin/sleep 30)
out=$(echo x | rj attach "$id" 2>&1)
expect_match "attach: a job without input says how to start one" "takes no input" "$out"
rj stop "$id" >/dev/null 2>&1
# A signal detaches (Ctrl-C, a `timeout`, a closed ssh session): the job goes on, and its stdin
# is free for the next writer.
id=$(rj start -i /bin/cat)
for sig in INT TERM HUP; do
    # A script's background commands ignore SIGINT: this one gets it as from a terminal.
    python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
        "${ATTACH[@]}" "$id" < <(sleep 30) >"$RJ_TMP/att-sig.out" 2>&1 &
    att=$!
    # Sent once attach holds SIGHUP, SIGINT and SIGTERM blocked (a signal before that ends it
    # as it would any program: a slow start under a sanitizer took over a second).
    for _ in $(seq 200); do
        m=$(awk '/^SigBlk/{print $2}' "/proc/$att/status" 2>/dev/null)
        [ -n "$m" ] && (((16#$m & 0x4003) == 0x4003)) && break
        sleep 0.05
    done
    sleep 0.2
    kill -"$sig" "$att"
    for _ in $(seq 50); do kill -0 "$att" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$att" 2>/dev/null; then
        kill -KILL "$att"
        fail "attach: SIG$sig detaches (it did not end)"
    else
        wait "$att"
        expect_eq "attach: SIG$sig detaches, exit 0" "0 detached" \
            "$? $(grep -o detached "$RJ_TMP/att-sig.out" || cat "$RJ_TMP/att-sig.out")"
    fi
done
expect_eq "attach: ... and the job goes on, its stdin free for the next" "again" \
    "$(echo again | rj attach "$id" 2>&1)"
rj stop "$id" >/dev/null 2>&1
id=$(rj start -t -j shell /bin/sh -i)
out=$($PTY 30 90 --after 'detaches' --type 'echo attached-$((6*7))\r' --after 'attached-42' \
    --type '~.' -- "${ATTACH[@]}" shell)
expect_match "attach to a terminal job: typing reaches it" "attached-42" "$out"
expect_match "attach: ~. detaches, exit 0" "EXIT 0" "$out"
expect_eq "attach: ... and the job goes on" "running" "$(rj status -o json "$id" | grep -o '"state": *"[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"')"
rj stop "$id" >/dev/null 2>&1

# ---- flow control: a job that never reads its stdin
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$RJ_SERVER_PID/status"; }
rss0=$(rss)
head -c 200000000 /dev/zero | rj run -i /bin/sleep 4 &
feeder=$!
RJ_PIDS+=("$feeder")
sleep 3
rss1=$(rss)
wait "$feeder"
echo "# input: server RSS $rss0 KiB before, $rss1 KiB while 200 MB wait for a job that never reads"
case $RUNJOB in
*asan* | *tsan*) echo "# input: RSS not judged under a sanitizer build" ;;
*) [ $((rss1 - rss0)) -lt 8192 ] && ok "a job that never reads holds the server to a small bound (+$((rss1 - rss0)) KiB)" ||
    fail "a job that never reads holds the server to a small bound" "+$((rss1 - rss0)) KiB" ;;
esac

# ---- no controlling terminal but the job's own
out=$(rj run /bin/sh -c 'echo x >/dev/tty && echo reached || echo none' 2>/dev/null)
expect_eq "a job without a terminal has no controlling terminal (not the server's)" "none" "$out"
t_done
