#!/usr/bin/env bash
# `make bench`: runjob against what a user would pick instead (ssh to the host), and against
# what the kernel allows (the bare isolated spawn), all measured in this one run on this machine.
# Prints one table of ratios and writes it to bench/RESULTS.md. Not part of `make test`.
#
# Baselines it sets up itself: an sshd (Debian's openssh-server) on 127.0.0.1 with throwaway
# keys, stopped afterwards; bench/bench_spawn (bare clone + namespaces + /proc + exec, with and
# without cgroups).
#
# Environment: BENCH_QUICK=1 shrinks sizes (for a smoke run), RUNJOB_BIN, BUILD.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNJOB=${RUNJOB_BIN:-$ROOT/bin/runjob}
BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
TMP=$(mktemp -d /tmp/runjob-bench.XXXXXX)
PIDS=()
RESULTS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

say() { echo "bench: $*" >&2; }
# row FIGURE MEASURED BASELINE RATIO TARGET
row() { RESULTS+=("| $1 | $2 | $3 | $4 | $5 |"); say "$1: $2 vs $3 -> $4 ($5)"; }
now_ns() { date +%s%N; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# stats FILE: "p50 p99" of one number per line (ms).
stats() {
    python3 -c '
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print("%.3f %.3f" % (q(0.5), q(0.99)))' "$1"
}
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2fx' % (a/b) if b else 'n/a')" "$1" "$2"; }

[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (namespaces, cgroups, sshd)" >&2; exit 1; }
dpkg -s openssh-server >/dev/null 2>&1 || {
    say "installing openssh-server (baseline)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
        >/dev/null || { echo "bench: cannot install openssh-server" >&2; exit 1; }
}

# ---- the ssh baseline -----------------------------------------------------------------------
SSH_PORT=$(free_port)
mkdir -p "$TMP/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$TMP/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$TMP/ssh/user_key"
cp "$TMP/ssh/user_key.pub" "$TMP/ssh/authorized_keys"
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
PidFile $TMP/ssh/sshd.pid
EOF
/usr/sbin/sshd -D -f "$TMP/ssh/sshd_config" -E "$TMP/ssh/sshd.log" &
PIDS+=($!)
# A clean login: root's own shell start-up files would add ~100 ms to every ssh command.
SSH=(ssh -q -p "$SSH_PORT" -i "$TMP/ssh/user_key" -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1)
for _ in $(seq 50); do "${SSH[@]}" true 2>/dev/null && break; sleep 0.1; done
"${SSH[@]}" true || { echo "bench: sshd baseline did not come up" >&2; exit 1; }

# ---- a runjob server ----------------------------------------------------------------------
"$RUNJOB" certs -q --out "$TMP/certs" --user alice --user administrator >/dev/null ||
    { echo "bench: runjob certs failed" >&2; exit 1; }
RJ_PORT=$(free_port)
"$RUNJOB" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$TMP/state" \
    --client-pem-path "$TMP/certs/ca-clients-bundle.pem" \
    --server-cert-path "$TMP/certs/server-cert.pem" --server-key-path "$TMP/certs/server-key.pem" \
    --max-output-bytes 8G --max-running-jobs-per-user 2000 --default-limits-pids 4096 \
    --max-limits-pids 4096 >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
export RUNJOB_SERVER_HOST=127.0.0.1 RUNJOB_SERVER_PORT=$RJ_PORT
export RUNJOB_CA_CERT_PATH=$TMP/certs/root-ca-cert.pem
export RUNJOB_CLIENT_CERT_PATH=$TMP/certs/alice-cert.pem RUNJOB_CLIENT_KEY_PATH=$TMP/certs/alice-key.pem
for _ in $(seq 100); do "$RUNJOB" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$RUNJOB" ping >/dev/null || { echo "bench: runjob server did not come up" >&2; cat "$TMP/server.log"; exit 1; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# ---- 1. Start latency vs the bare isolated spawn (+ cgroups) -------------------------------
N=500
[ "$QUICK" = 1 ] && N=50
if [ -x "$BUILD/bench/bench_spawn" ] && [ -x "$BUILD/bench/bench_rpc" ]; then
    "$BUILD/bench/bench_spawn" --floor-only -n "$N" --cgroups >"$TMP/floor.txt" 2>"$TMP/floor.err"
    "$BUILD/bench/bench_rpc" -n "$N" >"$TMP/start.txt" 2>"$TMP/start.err"
    read -r f50 f99 < <(stats "$TMP/floor.txt")
    read -r s50 s99 < <(stats "$TMP/start.txt")
    row "Start -> exited, /bin/true, warm channel (p50 / p99 of $N)" "$s50 / $s99 ms" \
        "bare spawn + cgroups $f50 / $f99 ms" "$(ratio "$s50" "$f50")" "p50 <= 1.5x"
else
    row "Start latency" "not built" "-" "-" "needs bench/bench_spawn and bench/bench_rpc"
fi

# ---- 2. one-shot command: runjob run /bin/true vs ssh true --------------------------------
N=50
[ "$QUICK" = 1 ] && N=10
: >"$TMP/run.txt"
: >"$TMP/ssh.txt"
for _ in $(seq "$N"); do
    t0=$(now_ns); "$RUNJOB" run /bin/true >/dev/null 2>&1; t1=$(now_ns)
    echo "$(((t1 - t0) / 1000))e-3" >>"$TMP/run.txt"
    t0=$(now_ns); "${SSH[@]}" true; t1=$(now_ns)
    echo "$(((t1 - t0) / 1000))e-3" >>"$TMP/ssh.txt"
done
read -r r50 r99 < <(stats "$TMP/run.txt")
read -r h50 h99 < <(stats "$TMP/ssh.txt")
row "one-shot: \`runjob run /bin/true\` (new process + TLS) p50 of $N" "$r50 ms" \
    "\`ssh 127.0.0.1 true\` $h50 ms" "$(ratio "$r50" "$h50")" "< 1.0x (faster than ssh)"

# ---- 3. stream throughput: 1 GiB of job output to one reader vs ssh -----------------------
SIZE=$((1 << 30))
[ "$QUICK" = 1 ] && SIZE=$((128 << 20))
id=$("$RUNJOB" start /usr/bin/head -c "$SIZE" /dev/zero)
"$RUNJOB" stream "$id" >/dev/null # wait until the job has written everything
best_rj=0
best_ssh=0
for _ in 1 2 3; do
    t0=$(now_ns); "$RUNJOB" stream "$id" >/dev/null; t1=$(now_ns)
    mbs=$((SIZE * 1000 / ((t1 - t0) / 1000)))
    [ "$mbs" -gt "$best_rj" ] && best_rj=$mbs
    t0=$(now_ns); "${SSH[@]}" "head -c $SIZE /dev/zero" >/dev/null; t1=$(now_ns)
    mbs=$((SIZE * 1000 / ((t1 - t0) / 1000)))
    [ "$mbs" -gt "$best_ssh" ] && best_ssh=$mbs
done
row "stream: $((SIZE >> 20)) MiB of finished job output, one reader (best of 3)" "$best_rj MB/s" \
    "ssh head -c $best_ssh MB/s" "$(ratio "$best_rj" "$best_ssh")" ">= 1.0x"
RSS_IDLE=$(rss_kb "$SERVER_PID")

# ---- 4. fan-out: 100 concurrent readers of one job's 256 MiB -----------------------------
FSIZE=$((256 << 20))
READERS=100
[ "$QUICK" = 1 ] && { FSIZE=$((32 << 20)); READERS=20; }
fid=$("$RUNJOB" start /usr/bin/head -c "$FSIZE" /dev/zero)
"$RUNJOB" stream "$fid" >/dev/null
t_single0=$(now_ns); "$RUNJOB" stream "$fid" >/dev/null; t_single1=$(now_ns)
single=$((FSIZE * 1000 / ((t_single1 - t_single0) / 1000)))
peak_rss=0
t0=$(now_ns)
rpids=()
for i in $(seq "$READERS"); do
    ( s=$(now_ns); "$RUNJOB" stream "$fid" >/dev/null; e=$(now_ns); echo $(((e - s) / 1000000)) >"$TMP/reader.$i" ) &
    rpids+=($!)
done
while :; do
    r=$(rss_kb "$SERVER_PID")
    [ "$r" -gt "$peak_rss" ] && peak_rss=$r
    alive=0
    for p in "${rpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
    [ "$alive" = 0 ] && break
    sleep 0.2
done
wait
t1=$(now_ns)
agg=$((FSIZE / 1000 * READERS * 1000 / ((t1 - t0) / 1000) ))
read -r slow fast < <(cat "$TMP"/reader.* | sort -n | awk 'NR==1{f=$1} {s=$1} END{print s, f}')
row "fan-out: $READERS readers x $((FSIZE >> 20)) MiB, aggregate" "$agg MB/s" \
    "one reader $single MB/s" "$(ratio "$agg" "$single")" ">= 0.9x"
row "fan-out: slowest vs fastest reader" "$slow ms" "$fast ms" "$(ratio "$slow" "$fast")" "<= 2x"
per_reader=$(((peak_rss - RSS_IDLE) / READERS))
row "memory: server RSS per extra reader (peak during fan-out)" "$per_reader KiB" \
    "idle $RSS_IDLE KiB" "-" "<= 256 KiB"

# ---- 5. memory during a 1 GiB stream and with 1000 sleeping jobs; 6. scale ------------------
NJOBS=1000
[ "$QUICK" = 1 ] && NJOBS=100
t0=$(now_ns)
for i in $(seq "$NJOBS"); do
    "$RUNJOB" start /bin/sleep 30 >/dev/null 2>>"$TMP/scale.err" &
    [ $((i % 50)) -eq 0 ] && wait
done
wait
t1=$(now_ns)
running=$("$RUNJOB" list -o json | python3 -c 'import json,sys; print(sum(1 for j in json.load(sys.stdin)["jobs"] if j["state"]=="RUNNING"))')
: >"$TMP/list.txt"
for _ in $(seq 20); do
    s=$(now_ns); "$RUNJOB" list -o json >/dev/null; e=$(now_ns)
    echo "$(((e - s) / 1000))e-3" >>"$TMP/list.txt"
done
read -r l50 l99 < <(stats "$TMP/list.txt")
RSS_JOBS=$(rss_kb "$SERVER_PID")
row "scale: $NJOBS \`sleep 30\` jobs started 50 at a time" "$running running" \
    "$(((t1 - t0) / 1000000)) ms to start all" "-" "all run"
row "scale: \`runjob list\` with $NJOBS jobs (whole client process, p50)" "$l50 ms" "-" "-" "< 50 ms"
row "memory: server RSS with $NJOBS sleeping jobs" "$RSS_JOBS KiB" "idle $RSS_IDLE KiB" \
    "$(ratio "$RSS_JOBS" "$RSS_IDLE")" "-"

{
    echo "# runjob benchmarks"
    echo
    echo "Command: \`make bench\` (bench/run.sh). Machine: $(nproc) CPUs, $(free -g | awk '/^Mem/ {print $2}') GiB,"
    echo "$(uname -r), $(date -u +%Y-%m-%d). Every baseline was measured in the same run."
    echo
    echo "| figure | runjob | baseline | ratio | target |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${RESULTS[@]}"
} >"$TMP/RESULTS.md"
cat "$TMP/RESULTS.md"
[ "$QUICK" = 1 ] || cp "$TMP/RESULTS.md" bench/RESULTS.md
