#!/usr/bin/env bash
# `make bench`: runjob against what a user would pick instead (ssh to the host), and against
# what the kernel allows (the bare isolated spawn), all measured in this one run on this machine.
# Prints one table of ratios (figure, runjob, baseline, ratio, target, pass/miss); a full run
# also writes it to bench/RESULTS.md (the "Profile" section there is kept by hand). Not part of
# `make test`. Takes 3-6 minutes on 2 CPUs; BENCH_QUICK=1 shrinks every size (about 1 minute).
#
# Baselines it sets up itself: an sshd (Debian's openssh-server) on 127.0.0.1 with a throwaway
# host key and a throwaway authorized key, stopped afterwards; bench/bench_spawn (bare clone3
# with the job's namespaces + /proc + exec /bin/true + wait, with and without v1 cgroups);
# bench/bench_tls (the TLS ceiling of the stream rate: OpenSSL alone over loopback).
#
# Environment: BENCH_QUICK=1, RUNJOB_BIN (default bin/runjob), BUILD (default build),
# BENCH_OUT (where a full run writes its table; default bench/RESULTS.md), BENCH_PARTS (a comma
# list of start,oneshot,cold,stream,rate,fanout,scale: run only those (rate: the stream
# rate rows without stream's memory rows); such a partial run prints its rows
# and leaves RESULTS.md alone), BENCH_FAN_READERS / BENCH_FAN_MIB (override the fan-out size).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNJOB=${RUNJOB_BIN:-$ROOT/bin/runjob}
BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
PARTS=${BENCH_PARTS:-}
OUT=${BENCH_OUT:-$ROOT/bench/RESULTS.md}
TMP=$(mktemp -d /tmp/runjob-bench.XXXXXX)
SSHD_PID=
SERVER_PID=
SERVER2_PID=
SSH_MUX_PATH=
AGENT_PID=
ROWS=()
T_BEGIN=$EPOCHREALTIME
LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
# part NAME: true when BENCH_PARTS is unset or names NAME.
part() { [ -z "$PARTS" ] || [[ ",$PARTS," == *",$1,"* ]]; }

# Stops what this script started, by pid: the runjob server first (it kills its jobs and
# removes their cgroups on SIGTERM; give it time), then sshd.
stop_pid() { # PID SECONDS
    local p=$1 i
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    say "pid $p did not stop in $2 s; killing it"
    kill -KILL "$p" 2>/dev/null
}
cleanup() {
    # the ssh ControlMaster (cold part) is stopped through its socket: it runs detached
    [ -n "$SSH_MUX_PATH" ] && ssh -q -o ControlPath="$SSH_MUX_PATH" -O exit root@127.0.0.1 2>/dev/null
    stop_pid "$AGENT_PID" 10
    stop_pid "$SERVER_PID" 60
    stop_pid "$SERVER2_PID" 30
    rm -rf "/dev/shm/$(basename "$TMP")"
    stop_pid "$SSHD_PID" 5
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Microseconds since the epoch, without a fork.
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# py EXPR ARGS...: evaluate a Python expression over float args a[0], a[1], ...
py() { local e=$1; shift; python3 -c "import sys; a=[float(x) for x in sys.argv[1:]]; print($e)" "$@"; }
# stats FILE: "p50 p99" of one number per line.
stats() {
    python3 -c '
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print("%.2f %.2f" % (q(0.5), q(0.99)) if v else "nan nan")' "$1"
}
# row FIGURE RUNJOB BASELINE RATIO TARGET VERDICT
row() {
    ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |")
    say "$1: $2 | $3 | $4 | $5 | $6"
}
# verdict PYTHON-CONDITION ARGS...: pass or miss
verdict() { [ "$(py "$@")" = True ] && echo pass || echo miss; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# peak_rss_while PID...: the server's peak RSS (KiB), sampled every 20 ms while any of the
# PIDs lives (a zombie counts as gone). One Python process does the sampling: a shell loop
# forks awk and sleep 50 times a second, CPU taken from what is being measured.
peak_rss_while() {
    python3 - "$SERVER_PID" "$@" <<'PY'
import sys, time
server, pids = sys.argv[1], set(sys.argv[2:])
def alive(p):
    try:
        return open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def rss():
    try:
        for line in open("/proc/%s/status" % server):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
peak = rss()
while pids:
    peak = max(peak, rss())
    time.sleep(0.02)
    pids = {p for p in pids if alive(p)}
print(peak)
PY
}
mbs() { py '"%.0f" % (a[0] / a[1])' "$1" "$2"; } # BYTES MICROSECONDS -> MB/s
# cold_runs N OUT CMD... [-- CMD...]...: runs the commands in turn, N rounds, each as a new
# process (posix_spawn, output to /dev/null), and writes per command one line "cpu_p50 wall_p50"
# in ms: cpu is the process's own user + system time (its rusage from wait4, threads included),
# wall from spawn to reaped. Interleaved, so that machine noise hits every command alike. A
# command's leading NAME=VALUE words go into its environment alone.
cold_runs() {
    python3 - "$@" <<'PY'
import os, re, sys, time, statistics
n, out, cmds = int(sys.argv[1]), sys.argv[2], [[]]
for a in sys.argv[3:]:
    if a == "--":
        cmds.append([])
    else:
        cmds[-1].append(a)
envs = []
for argv in cmds:
    env = dict(os.environ)
    while argv and re.match(r"^[A-Z_]+=", argv[0]):
        k, v = argv.pop(0).split("=", 1)
        env[k] = v
    envs.append(env)
null = os.open("/dev/null", os.O_WRONLY)
cpu, wall = [[] for _ in cmds], [[] for _ in cmds]
for _ in range(n):
    for i, argv in enumerate(cmds):
        t0 = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, envs[i],
                              file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
        _, status, ru = os.wait4(pid, 0)
        t1 = time.perf_counter()
        if status != 0:
            sys.exit("%s exited with status %d" % (" ".join(argv), status))
        cpu[i].append((ru.ru_utime + ru.ru_stime) * 1e3)
        wall[i].append((t1 - t0) * 1e3)
with open(out, "w") as f:
    for c, w in zip(cpu, wall):
        f.write("%.2f %.2f\n" % (statistics.median(c), statistics.median(w)))
PY
}

[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, cgroups, sshd)"
[ -x "$RUNJOB" ] || die "$RUNJOB not built (make)"
for b in bench_spawn bench_rpc bench_tls; do
    [ -x "$BUILD/bench/$b" ] || die "$BUILD/bench/$b not built (make tests)"
done
if ! [ -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
    say "installing openssh-server and openssh-client (the ssh baseline; the system sshd stays off)"
    # policy-rc.d 101: the package's postinst must not start (or enable) the system's sshd.
    printf '#!/bin/sh\nexit 101\n' >"$TMP/policy-rc.d"
    chmod +x "$TMP/policy-rc.d"
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ "$had_policy" = 1 ] || cp "$TMP/policy-rc.d" /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openssh-server openssh-client >"$TMP/apt.log" 2>&1
    rc=$?
    [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { cat "$TMP/apt.log" >&2; die "cannot install openssh-server"; }
fi

if [ "$QUICK" = 1 ]; then
    N_START=60 N_SPACED=20 N_ONESHOT=10 N_COLD=20 STREAM_SIZE=$((128 << 20)) FAN_SIZE=$((32 << 20)) READERS=20
    N_JOBS=100 MEM_SMALL=$((32 << 20))
else
    N_START=500 N_SPACED=100 N_ONESHOT=40 N_COLD=100 STREAM_SIZE=$((1 << 30)) FAN_SIZE=$((256 << 20)) READERS=100
    N_JOBS=1000 MEM_SMALL=$((256 << 20))
fi
GAP_MS=50
PAUSE_MS=5
READERS=${BENCH_FAN_READERS:-$READERS}
[ -n "${BENCH_FAN_MIB:-}" ] && FAN_SIZE=$((BENCH_FAN_MIB << 20))

# ---- the ssh baseline: our own sshd, our own keys, a clean login -----------------------------
SSH_PORT=$(free_port)
mkdir -p "$TMP/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$TMP/ssh/host_key" || die "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -f "$TMP/ssh/user_key" || die "ssh-keygen failed"
# A user's ssh runs its command through the login shell, which reads root's start-up files;
# those have nothing to do with ssh (here ~1 s: root's ~/.bashrc runs pyenv's set-up). sshd
# runs `bash -c CMD`, non-interactive, but Debian's bash reads ~/.bashrc anyway when sshd
# starts it; the key's session gets an empty HOME instead (PermitUserEnvironment HOME), which
# keeps the comparison to ssh itself.
mkdir -p "$TMP/ssh/home"
printf 'environment="HOME=%s" %s\n' "$TMP/ssh/home" "$(cat "$TMP/ssh/user_key.pub")" \
    >"$TMP/ssh/authorized_keys"
chmod 600 "$TMP/ssh/authorized_keys"
cat >"$TMP/ssh/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $TMP/ssh/host_key
AuthorizedKeysFile $TMP/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
PermitUserEnvironment HOME
PidFile none
EOF
/usr/sbin/sshd -D -f "$TMP/ssh/sshd_config" -E "$TMP/ssh/sshd.log" &
SSHD_PID=$!
SSH=(ssh -q -p "$SSH_PORT" -i "$TMP/ssh/user_key" -F /dev/null -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ControlMaster=no -o ControlPath=none
    root@127.0.0.1)
for _ in $(seq 50); do "${SSH[@]}" true 2>/dev/null && break; sleep 0.1; done
"${SSH[@]}" true || { cat "$TMP/ssh/sshd.log" >&2; die "the sshd baseline did not come up"; }
# shellcheck disable=SC2016 # $HOME as the session sees it
[ "$("${SSH[@]}" 'echo $HOME')" = "$TMP/ssh/home" ] ||
    say "warning: the ssh session's HOME is not the empty one: its rc files count in ssh's rows"
SSH_CIPHER=$("${SSH[@]}" -v true 2>&1 | sed -n 's/.*cipher: \([^ ]*\).*/\1/p' | head -1)
# ssh at its fastest on a CPU with AES instructions: AES-GCM needs no separate MAC, and plain
# curve25519 key exchange (OpenSSH 9's default, sntrup761x25519, costs its client ~50 ms more
# CPU here).
SSH_FAST=("${SSH[@]:0:${#SSH[@]}-1}" -c aes128-gcm@openssh.com -o KexAlgorithms=curve25519-sha256
    "${SSH[-1]}")

# ---- a runjob server -------------------------------------------------------------------------
"$RUNJOB" certs -q --out "$TMP/certs" --user alice --user administrator >/dev/null ||
    die "runjob certs failed"
# serve STATE_DIR LOG: a runjob server on a free port; sets RJ_PORT and SRV_PID.
# No per-user cap (the scale figure starts 1000 jobs); room for the 1 GiB stream.
serve() {
    RJ_PORT=$(free_port)
    "$RUNJOB" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$1" \
        --client-pem-path "$TMP/certs/ca-clients-bundle.pem" \
        --server-cert-path "$TMP/certs/server-cert.pem" --server-key-path "$TMP/certs/server-key.pem" \
        --max-output-bytes 2GiB --max-running-jobs-per-user 0 --audit-log "$2.audit" \
        >"$2" 2>&1 &
    SRV_PID=$!
    for _ in $(seq 100); do
        RUNJOB_SERVER_PORT=$RJ_PORT "$RUNJOB" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$2" >&2
    die "the runjob server did not come up"
}
export RUNJOB_SERVER_HOST=127.0.0.1
export RUNJOB_CA_CERT_PATH=$TMP/certs/root-ca-cert.pem
export RUNJOB_CLIENT_CERT_PATH=$TMP/certs/alice-cert.pem RUNJOB_CLIENT_KEY_PATH=$TMP/certs/alice-key.pem
serve "$TMP/state" "$TMP/server.log"
SERVER_PID=$SRV_PID
export RUNJOB_SERVER_PORT=$RJ_PORT
RSS_IDLE=$(rss_kb "$SERVER_PID")
say "sshd on :$SSH_PORT ($SSH_CIPHER), runjob serve on :$RJ_PORT (pid $SERVER_PID), idle RSS $RSS_IDLE KiB"

# ---- 1. Start latency vs the bare isolated spawn + cgroups -----------------------------------
if part start; then
# Five rounds alternate the floor and the RPC so that machine noise hits both alike. A second
# server, whose state directory is on tmpfs, takes part in every round: the difference to the
# first is what the job records' fsyncs cost (fsync, rename, fsync of the folder, per record).
mkdir -p "/dev/shm/$(basename "$TMP")"
serve "/dev/shm/$(basename "$TMP")/state" "$TMP/server2.log"
SERVER2_PID=$SRV_PID PORT2=$RJ_PORT
: >"$TMP/floor.txt"
: >"$TMP/start.txt"
: >"$TMP/start-shm.txt"
for _ in 1 2 3 4 5; do
    "$BUILD/bench/bench_spawn" --floor-only --cgroups -n $((N_START / 5)) >>"$TMP/floor.txt" \
        2>>"$TMP/floor.err" || { cat "$TMP/floor.err" >&2; die "bench_spawn failed"; }
    "$BUILD/bench/bench_rpc" -n $((N_START / 5)) >>"$TMP/start.txt" 2>>"$TMP/start.err" ||
        { cat "$TMP/start.err" >&2; die "bench_rpc failed"; }
    RUNJOB_SERVER_PORT=$PORT2 "$BUILD/bench/bench_rpc" -n $((N_START / 10)) >>"$TMP/start-shm.txt" \
        2>>"$TMP/start.err" || { cat "$TMP/start.err" >&2; die "bench_rpc failed"; }
done
stop_pid "$SERVER2_PID" 30
SERVER2_PID=
read -r f50 f99 < <(stats "$TMP/floor.txt")
read -r s50 s99 < <(stats "$TMP/start.txt")
read -r m50 m99 < <(stats "$TMP/start-shm.txt")
row "Start latency: Start RPC -> job exited, /bin/true, warm channel, p50 / p99 of $N_START" \
    "$s50 / $s99 ms" "bare isolated spawn + v1 cgroups: $f50 / $f99 ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$s50" "$f50")" "p50 <= 1.3x" \
    "$(verdict 'a[0] <= 1.3 * a[1]' "$s50" "$f50")"
# The same start without gRPC (job_start + job_wait in one process), against its own floor:
# splits the figure above into the job runner's part and the RPC's; with shims started on
# demand (prespawn 0, as before the pool) and from the pool (the server's default).
pval() { awk -v k="$2" '$1 ~ /^'"$1"'/ {for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}' "$3"; }
for pre in 0 2; do
    RUNJOB_BIN=$RUNJOB "$BUILD/bench/bench_spawn" --cgroups --prespawn "$pre" -n $((N_START / 2)) \
        >"$TMP/inproc.$pre.txt" 2>&1 || { cat "$TMP/inproc.$pre.txt" >&2; die "bench_spawn failed"; }
    ip50=$(pval job_start p50 "$TMP/inproc.$pre.txt") ip99=$(pval job_start p99 "$TMP/inproc.$pre.txt")
    if50=$(pval floor p50 "$TMP/inproc.$pre.txt")
    row "(detail) job_start + job_wait in-process, no RPC, cgroup made ahead, $([ "$pre" = 0 ] && echo "shim started on demand" || echo "pooled shims (--prespawn $pre, the server's default)"), p50 / p99 of $((N_START / 2))" \
        "$ip50 / $ip99 ms" "bare isolated spawn + v1 cgroups: $if50 ms" \
        "$(py '"%.2fx" % (a[0] / a[1])' "$ip50" "$if50")" "-" "-"
done

row "(detail) the same Start latency, server's --state-dir on tmpfs (no fsync cost), p50 / p99 of $((N_START / 2))" \
    "$m50 / $m99 ms" "bare isolated spawn + v1 cgroups: $f50 / $f99 ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$m50" "$f50")" "-" "-"

# Back to back, each start shares the 2 CPUs with the previous job's clean-up and the next
# job's preparation (runjob does both off the Start's path, the floor has neither); a pause of
# PAUSE_MS between starts lets those finish first. A user's single start meets an idle server:
# spaced GAP_MS apart, the first cgroup.procs write of each start waits for an RCU grace period
# (the floor pays it; runjob's Start has no such write on its path: the shim waits in its cgroup).
for gap in "$PAUSE_MS" "$GAP_MS"; do
    : >"$TMP/floor-gap.txt"
    : >"$TMP/start-gap.txt"
    for _ in 1 2; do
        "$BUILD/bench/bench_spawn" --floor-only --cgroups --gap-ms "$gap" -n $((N_SPACED / 2)) \
            >>"$TMP/floor-gap.txt" 2>>"$TMP/floor.err" || { cat "$TMP/floor.err" >&2; die "bench_spawn failed"; }
        "$BUILD/bench/bench_rpc" -g "$gap" -n $((N_SPACED / 2)) >>"$TMP/start-gap.txt" \
            2>>"$TMP/start.err" || { cat "$TMP/start.err" >&2; die "bench_rpc failed"; }
    done
    read -r g50 g99 < <(stats "$TMP/floor-gap.txt")
    read -r sg50 sg99 < <(stats "$TMP/start-gap.txt")
    if [ "$gap" = "$PAUSE_MS" ]; then
        what="a $gap ms pause between starts (the previous job's clean-up and the next one's preparation done by then)"
    else
        what="starts spaced $gap ms apart (each on an idle machine, as a single user's)"
    fi
    row "(detail) the same, $what, p50 / p99 of $N_SPACED" \
        "$sg50 / $sg99 ms" "bare isolated spawn + v1 cgroups, spaced alike: $g50 / $g99 ms" \
        "$(py '"%.2fx" % (a[0] / a[1])' "$sg50" "$g50")" "-" "-"
done

fi

# ---- 2. one-shot command: runjob run /bin/true vs ssh 127.0.0.1 true -------------------------
if part oneshot; then
: >"$TMP/run.txt"
: >"$TMP/ssh.txt"
for _ in $(seq "$N_ONESHOT"); do
    t0=$(now_us); "$RUNJOB" run /bin/true >/dev/null 2>>"$TMP/run.err"; t1=$(now_us)
    py '"%.3f" % ((a[1] - a[0]) / 1e3)' "$t0" "$t1" >>"$TMP/run.txt"
    t0=$(now_us); "${SSH[@]}" true; t1=$(now_us)
    py '"%.3f" % ((a[1] - a[0]) / 1e3)' "$t0" "$t1" >>"$TMP/ssh.txt"
done
read -r r50 r99 < <(stats "$TMP/run.txt")
read -r h50 h99 < <(stats "$TMP/ssh.txt")
row "one-shot: \`runjob run /bin/true\` (new process, TLS handshake), p50 / p99 of $N_ONESHOT" \
    "$r50 / $r99 ms" "\`ssh 127.0.0.1 true\` (new connection): $h50 / $h99 ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$r50" "$h50")" "faster than ssh (< 1.0x)" \
    "$(verdict 'a[0] < a[1]' "$r50" "$h50")"

fi

# ---- 2b. cold client: CPU and wall time of one `runjob ping` process ---------------------------
# A client process's cost on the user's machine: exec of the static binary, TLS and gRPC set-up,
# the mTLS handshake, one unary call, teardown. Against ssh's client over a new connection at
# its fastest cipher (the sshd's CPU is not counted, nor is runjob's server's), and `runjob
# --version` (exec and exit alone) as the floor. The stretch baseline: ssh multiplexed over a
# ControlMaster connection made once beforehand (no key exchange or authentication per run:
# one new session on an open connection), the lowest wall time an ssh user gets.
if part cold; then
SSH_MUX_PATH=$TMP/ssh/mux
SSH_MUX=(ssh -q -p "$SSH_PORT" -i "$TMP/ssh/user_key" -F /dev/null -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ControlMaster=auto
    -o ControlPath="$SSH_MUX_PATH" -o ControlPersist=120 root@127.0.0.1)
# The master detaches and lives on; its output away from the caller's pipes.
"${SSH_MUX[@]}" true </dev/null >/dev/null 2>&1 && ssh -q -o ControlPath="$SSH_MUX_PATH" -O check \
    root@127.0.0.1 2>/dev/null || die "the ssh ControlMaster did not come up"
# runjob's own ControlMaster: `runjob agent` holds one connection, and a client process with
# RUNJOB_AGENT_SOCK relays its calls over the agent's unix socket. The agent's CPU over the
# rounds (from /proc) is counted per call beside the client process's.
eval "$("$RUNJOB" agent -q -a "$TMP/agent.sock")" || die "runjob agent did not start"
AGENT_PID=$RUNJOB_AGENT_PID AGENT_SOCK=$RUNJOB_AGENT_SOCK
unset RUNJOB_AGENT_SOCK RUNJOB_AGENT_PID # for the one command below alone
agent_ticks() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
a0=$(agent_ticks)
cold_runs "$N_COLD" "$TMP/cold.txt" "$RUNJOB" ping -- "${SSH_FAST[@]}" true -- "$RUNJOB" --version \
    -- "${SSH_MUX[@]}" true -- "RUNJOB_AGENT_SOCK=$AGENT_SOCK" "$RUNJOB" ping ||
    die "cold client runs failed"
a1=$(agent_ticks)
ac=$(py '"%.2f" % ((a[1] - a[0]) * 1000.0 / a[2] / a[3])' "$a0" "$a1" "$(getconf CLK_TCK)" "$N_COLD")
{ read -r pc pw; read -r sc sw; read -r vc vw; read -r mc mw; read -r gc gw; } <"$TMP/cold.txt"
row "cold client through \`runjob agent\`: \`runjob ping\` CPU per process + the agent's CPU per call, p50 of $N_COLD" "$gc + $ac ms" \
    "\`ssh -c aes128-gcm@openssh.com -o KexAlgorithms=curve25519-sha256 127.0.0.1 true\` (new connection, the ssh process): $sc ms; \`runjob --version\`: $vc ms" \
    "$(py '"%.2fx" % ((a[0] + a[1]) / a[2])' "$gc" "$ac" "$sc")" "<= 8 ms" "$(verdict 'a[0] + a[1] <= 8' "$gc" "$ac")"
row "cold client through \`runjob agent\`: \`runjob ping\` wall time, p50 of $N_COLD" "$gw ms" \
    "the same ssh, new connection: $sw ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$gw" "$sw")" "<= 0.1x ssh" "$(verdict 'a[0] <= 0.1 * a[1]' "$gw" "$sw")"
row "cold client through \`runjob agent\` (stretch): \`runjob ping\` wall time, p50 of $N_COLD" "$gw ms" \
    "\`ssh -o ControlMaster=auto -o ControlPath=... 127.0.0.1 true\` over a master connection made beforehand: $mw ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$gw" "$mw")" "below multiplexed ssh (< 1.0x)" "$(verdict 'a[0] < a[1]' "$gw" "$mw")"
row "cold client without an agent: \`runjob ping\` CPU per process (user + sys, all threads), p50 of $N_COLD" "$pc ms" \
    "\`ssh -c aes128-gcm@openssh.com -o KexAlgorithms=curve25519-sha256 127.0.0.1 true\` (new connection, the ssh process): $sc ms; \`runjob --version\`: $vc ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$pc" "$sc")" "<= 8 ms" "$(verdict 'a[0] <= 8' "$pc")"
row "cold client without an agent: \`runjob ping\` wall time, p50 of $N_COLD" "$pw ms" \
    "the same ssh: $sw ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$pw" "$sw")" "<= 0.1x ssh" "$(verdict 'a[0] <= 0.1 * a[1]' "$pw" "$sw")"
row "cold client without an agent (stretch): \`runjob ping\` wall time, p50 of $N_COLD" "$pw ms" \
    "\`ssh -o ControlMaster=auto -o ControlPath=... 127.0.0.1 true\` over a master connection made beforehand: $mw ms (the ssh process's CPU: $mc ms)" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$pw" "$mw")" "below multiplexed ssh (< 1.0x)" "$(verdict 'a[0] < a[1]' "$pw" "$mw")"
fi

# ---- 3. stream throughput: 1 GiB of job output to one reader vs ssh head -c ------------------
# The job runs first; each reader then streams its finished output (best of 3, alternating).
# Memory: the server's peak RSS while a job writes STREAM_SIZE and one reader follows it, against
# the same for MEM_SMALL: RSS must not grow with the output size.
follow_peak() { # SIZE -> peak server RSS (KiB) while a job writes SIZE and a reader follows it
    local id p
    id=$("$RUNJOB" start /usr/bin/head -c "$1" /dev/zero) || die "start failed"
    "$RUNJOB" stream "$id" >/dev/null &
    p=$!
    peak_rss_while "$p"
    wait "$p" || die "stream of $id failed"
}
if part stream; then
# Three rounds, alternating, the highest peak of each, and 256 MiB as the smaller size: a 64 MiB
# run lasted ~0.15 s, too short to reach a followed stream's steady state (1 MiB chunks in
# flight), so one run of each compared what the sampler happened to catch more than the sizes
# (1.07x-1.20x between runs of one binary; 256 MiB and three rounds: 1.03x-1.05x).
RSS_SMALL=0 RSS_BIG=0
for _ in 1 2 3; do
    RSS_SMALL=$(py '"%d" % max(a[0], a[1])' "$RSS_SMALL" "$(follow_peak "$MEM_SMALL")")
    RSS_BIG=$(py '"%d" % max(a[0], a[1])' "$RSS_BIG" "$(follow_peak "$STREAM_SIZE")")
done
fi
# The rate against three baselines, each a new process timed from spawn to exit like `runjob
# stream`: ssh at its default cipher, ssh at its fastest (AES-GCM: no separate MAC, AES
# instructions; aes128 and aes256 both run, the faster counts), and the TLS ceiling
# (bench/bench_tls: OpenSSL alone, TLS 1.3 AES-128-GCM, the suite our server picks, one sender
# and one reader process over loopback, 16 KiB records, no gRPC). Rounds alternate all five, best of 3.
# BENCH_PARTS=rate runs these rows alone.
if part stream || part rate; then
id=$("$RUNJOB" start /usr/bin/head -c "$STREAM_SIZE" /dev/zero) || die "start failed"
"$RUNJOB" stream "$id" | cmp -n "$STREAM_SIZE" - /dev/zero >/dev/null || die "stream of $id is not $STREAM_SIZE zero bytes"
SSH_G128=("${SSH[@]:0:${#SSH[@]}-1}" -c aes128-gcm@openssh.com "${SSH[-1]}")
SSH_G256=("${SSH[@]:0:${#SSH[@]}-1}" -c aes256-gcm@openssh.com "${SSH[-1]}")
TLS_PUMP=("$BUILD/bench/bench_tls" --cert "$TMP/certs/server-cert.pem" --key "$TMP/certs/server-key.pem"
    --bytes "$STREAM_SIZE")
"${TLS_PUMP[@]}" --bytes $((1 << 20)) >/dev/null || die "bench_tls failed"
best_rj=0 best_ssh=0 best_g128=0 best_g256=0 best_tls=0
# rate BEST CMD...: runs CMD with stdout to /dev/null; prints max(BEST, STREAM_SIZE / its time).
rate() {
    local best=$1 t0 t1
    shift
    t0=$(now_us); "$@" >/dev/null || die "$* failed"; t1=$(now_us)
    py '"%.0f" % max(a[0], a[1] / a[2])' "$best" "$STREAM_SIZE" $((t1 - t0))
}
for _ in 1 2 3; do
    best_rj=$(rate "$best_rj" "$RUNJOB" stream "$id")
    best_ssh=$(rate "$best_ssh" "${SSH[@]}" "head -c $STREAM_SIZE /dev/zero")
    best_g128=$(rate "$best_g128" "${SSH_G128[@]}" "head -c $STREAM_SIZE /dev/zero")
    best_g256=$(rate "$best_g256" "${SSH_G256[@]}" "head -c $STREAM_SIZE /dev/zero")
    best_tls=$(rate "$best_tls" "${TLS_PUMP[@]}")
done
if [ "$best_g128" -ge "$best_g256" ]; then
    best_fast=$best_g128 fast_name="aes128-gcm@openssh.com" other="aes256-gcm: $best_g256 MB/s"
else
    best_fast=$best_g256 fast_name="aes256-gcm@openssh.com" other="aes128-gcm: $best_g128 MB/s"
fi
row "stream: $((STREAM_SIZE >> 20)) MiB of job output to one reader, best of 3" "$best_rj MB/s" \
    "\`ssh 127.0.0.1 'head -c $((STREAM_SIZE >> 20))M /dev/zero'\` ($SSH_CIPHER, the default): $best_ssh MB/s" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$best_rj" "$best_ssh")" ">= 1.0x ssh" \
    "$(verdict 'a[0] >= a[1]' "$best_rj" "$best_ssh")"
row "stream: the same, against ssh at its fastest cipher" "$best_rj MB/s" \
    "the same ssh, \`-c $fast_name\`: $best_fast MB/s ($other)" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$best_rj" "$best_fast")" ">= 1.5x" \
    "$(verdict 'a[0] >= 1.5 * a[1]' "$best_rj" "$best_fast")"
row "stream: the same, against the TLS ceiling" "$best_rj MB/s" \
    "bench_tls: OpenSSL alone, TLS 1.3 AES-128-GCM over loopback, one sender and one reader process: $best_tls MB/s" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$best_rj" "$best_tls")" ">= 0.7x" \
    "$(verdict 'a[0] >= 0.7 * a[1]' "$best_rj" "$best_tls")"

fi

# ---- 4. fan-out: READERS concurrent readers of one job's FAN_SIZE output -----------------------
# Two rounds, each one reader then READERS readers together, the best of each kind: the same
# number of samples on both sides (a best of 3 single readers against one fan-out round made the
# ratio swing 0.64x-1.35x between runs of one binary). Slowest/fastest come from the best round.
if part fanout; then
fid=$("$RUNJOB" start /usr/bin/head -c "$FAN_SIZE" /dev/zero) || die "start failed"
"$RUNJOB" stream "$fid" >/dev/null
single=0 agg=0 PEAK_FAN=0
for round in 1 2; do
    t0=$(now_us); "$RUNJOB" stream "$fid" >/dev/null; t1=$(now_us)
    single=$(py '"%.0f" % max(a[0], a[1] / a[2])' "$single" "$FAN_SIZE" $((t1 - t0)))
    [ "$round" = 1 ] && RSS_BEFORE_FAN=$(rss_kb "$SERVER_PID")
    # Every reader waits for one go (a fifo opened by all), so that they start together.
    mkfifo "$TMP/go.$round"
    rpids=()
    for i in $(seq "$READERS"); do
        (
            read -r _ <"$TMP/go.$round"
            s=$(now_us)
            "$RUNJOB" stream "$fid" >/dev/null 2>"$TMP/reader.$i.err" || echo failed >"$TMP/reader.$i.failed"
            e=$(now_us)
            echo "$s $e" >"$TMP/reader.$round.$i.t"
        ) &
        rpids+=($!)
    done
    sleep 1 # every reader is blocked on the fifo
    t0=$(now_us)
    exec 9>"$TMP/go.$round"
    for _ in $(seq "$READERS"); do echo go >&9; done
    exec 9>&-
    # One sampler while the readers run: done when the last reader has exited.
    peak=$(peak_rss_while "${rpids[@]}")
    for p in "${rpids[@]}"; do wait "$p"; done
    t1=$(now_us)
    nfailed=$(ls "$TMP"/reader.*.failed 2>/dev/null | wc -l)
    [ "$nfailed" = 0 ] || { cat "$TMP"/reader.*.err | sort | uniq -c >&2; die "$nfailed fan-out readers failed"; }
    PEAK_FAN=$(py '"%d" % max(a[0], a[1])' "$PEAK_FAN" "$peak")
    agg_r=$(py '"%.0f" % (a[0] * a[1] / a[2])' "$FAN_SIZE" "$READERS" $((t1 - t0)))
    say "fan-out round $round: one reader $single MB/s (best so far), $READERS readers $agg_r MB/s"
    if [ "$(py '"%d" % (a[0] > a[1])' "$agg_r" "$agg")" = 1 ]; then
        agg=$agg_r
        read -r fastest slowest < <(cat "$TMP"/reader.$round.*.t |
            awk '{d = ($2 - $1) / 1000; if (!n++ || d < lo) lo = d; if (d > hi) hi = d} END {printf "%.0f %.0f\n", lo, hi}')
    fi
done
row "fan-out: $READERS concurrent readers x $((FAN_SIZE >> 20)) MiB, aggregate, best of 2" "$agg MB/s" \
    "our own one reader, best of 2: $single MB/s" "$(py '"%.2fx" % (a[0] / a[1])' "$agg" "$single")" \
    ">= 0.9x" "$(verdict 'a[0] >= 0.9 * a[1]' "$agg" "$single")"
row "fan-out: slowest vs fastest reader (in the best round)" "slowest $slowest ms" "fastest $fastest ms" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$slowest" "$fastest")" "<= 2x" \
    "$(verdict 'a[0] <= 2 * a[1]' "$slowest" "$fastest")"

fi

# ---- 5. memory --------------------------------------------------------------------------------
row "memory: server RSS idle" "$RSS_IDLE KiB" "-" "-" "-" "-"
part stream && row "memory: peak server RSS while a job writes and one reader follows it, highest of 3 runs each" \
    "$((STREAM_SIZE >> 20)) MiB: $RSS_BIG KiB" "$((MEM_SMALL >> 20)) MiB: $RSS_SMALL KiB" \
    "$(py '"%.2fx" % (a[0] / a[1])' "$RSS_BIG" "$RSS_SMALL")" \
    "independent of output size (<= 1.1x)" "$(verdict 'a[0] <= 1.1 * a[1]' "$RSS_BIG" "$RSS_SMALL")"
part fanout && row "memory: server RSS per extra reader (peak during fan-out - before, / $READERS)" \
    "$(((PEAK_FAN - RSS_BEFORE_FAN) / READERS)) KiB" "before $RSS_BEFORE_FAN KiB, peak $PEAK_FAN KiB" "-" "<= 256 KiB" \
    "$(verdict 'a[0] <= 256' $(((PEAK_FAN - RSS_BEFORE_FAN) / READERS)))"

# ---- 6. scale: N_JOBS `sleep 30` jobs started at once, then List -----------------------------
if part scale; then
"$BUILD/bench/bench_rpc" scale -n "$N_JOBS" -c 50 -l 20 >"$TMP/scale.txt" 2>"$TMP/scale.err" ||
    { cat "$TMP/scale.err" >&2; die "bench_rpc scale failed"; }
kv() { sed -n "s/^$1=//p" "$TMP/scale.txt"; }
RSS_JOBS=$(rss_kb "$SERVER_PID")
: >"$TMP/list.txt"
for _ in $(seq 10); do
    t0=$(now_us); "$RUNJOB" list -o json >"$TMP/list.json"; t1=$(now_us)
    py '"%.3f" % ((a[1] - a[0]) / 1e3)' "$t0" "$t1" >>"$TMP/list.txt"
done
read -r lc50 _ < <(stats "$TMP/list.txt")
extra=""
[ "$(kv failed)" = 0 ] || extra=" ($(kv failed) failed: $(kv first_error))"
row "scale: $N_JOBS \`sleep 30\` jobs started at once (50 client threads, one channel)" \
    "$(kv running) of $(kv listed) running$extra" "all started in $(kv start_all_ms) ms" "-" \
    "all $N_JOBS run" "$(verdict 'a[0] == a[1]' "$(kv running)" "$N_JOBS")"
row "scale: List with $N_JOBS jobs, warm channel, p50 / p99 of 20" \
    "$(kv list_p50_ms) / $(kv list_p99_ms) ms" "\`runjob list -o json\` whole process: $lc50 ms" \
    "-" "< 50 ms" "$(verdict 'a[0] < 50' "$(kv list_p50_ms)")"
row "memory: server RSS with $N_JOBS sleeping jobs" "$RSS_JOBS KiB" "idle $RSS_IDLE KiB" \
    "$(py '"%.1f KiB per job" % ((a[0] - a[1]) / a[2])' "$RSS_JOBS" "$RSS_IDLE" "$N_JOBS")" "-" "-"
fi

# ---- the table ------------------------------------------------------------------------------
ELAPSED=$(py '"%.0f" % ((a[1] - a[0]))' "$T_BEGIN" "$EPOCHREALTIME")
{
    echo "Command: \`make bench\` (bench/run.sh$([ "$QUICK" = 1 ] && echo ", BENCH_QUICK=1")$([ -n "$PARTS" ] && echo ", BENCH_PARTS=$PARTS")), $(date -u '+%Y-%m-%d %H:%M UTC'), took ${ELAPSED} s."
    echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -m | awk '/^Mem/ {printf "%.1f GiB", $2 / 1024}') memory, Linux $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")."
    echo "Load average (1/5/15 min): $LOAD_BEGIN at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
    echo "$("$RUNJOB" --version 2>/dev/null | head -1) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')); $(ssh -V 2>&1)."
    echo
    echo "| figure | runjob | baseline (same run) | ratio | target | |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} >"$TMP/table.md"
echo
cat "$TMP/table.md"
if [ "$QUICK" != 1 ] && [ -z "$PARTS" ]; then
    # Keep the hand-written sections of RESULTS.md (from "## Profile" on) below the new table.
    {
        echo "# runjob benchmarks"
        echo
        echo "Regenerate with \`make bench\`; the table below is rewritten by every full run."
        echo
        cat "$TMP/table.md"
        echo
        [ -f "$OUT" ] && sed -n '/^## /,$p' "$OUT"
    } >"$TMP/RESULTS.md"
    cp "$TMP/RESULTS.md" "$OUT"
    say "wrote $OUT"
fi
