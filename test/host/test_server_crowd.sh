#!/bin/bash
# A crowd: 300 concurrent short jobs from 10 users, all running at once, then
# all released together: every status is right (exit codes differ per job, so a mix-up shows),
# every output is the job's own, no zombie and no job process or cgroup is left. Then kill -9
# of the server while 100 jobs of those users run, with streams attached: no job process
# survives, and after a restart they are LOST with their output still there.
# Open files: an ended job's output log is open only while someone reads it, so after the 300
# ended, and after the restart with 400 old jobs, the server is back to its idle fd count; six
# concurrent streams of one old job (before and after the restart) are byte-exact.
# Under a sanitizer build (RJ_SANITIZER) the crowd is 100 jobs and the killed ones 40: those
# tiers look for races and memory errors in the same paths, which a third of the crowd takes
# as well (100 running jobs still hold more fds than the soft limit of 1024); the scale is
# the release build's to prove. CROWD_A / CROWD_B (jobs per user) override either.
. "$(dirname "$0")/../lib.sh"
if [ -n "${RJ_SANITIZER:-}" ]; then PER_A=${CROWD_A:-10} PER_B=${CROWD_B:-4}; else
    PER_A=${CROWD_A:-30} PER_B=${CROWD_B:-10}; fi
NA=$((PER_A * 10)) NB=$((PER_B * 10))
rj_setup
USERS=(u0 u1 u2 u3 u4 u5 u6 u7 u8 u9)
"$RUNJOB" certs -q --out "$RJ_CERTS" --clients-only $(printf -- '--user %s ' "${USERS[@]}") ||
    { fail "client certificates for 10 users"; exit 1; }
PUB=$(rj_pubdir)
chmod 755 "$PUB"
mkfifo -m 666 "$PUB/gate"
trap 'exec 3>&- 4>&- 2>/dev/null; rj_cleanup; rm -rf "$PUB"' EXIT
# A running job holds about a dozen fds (pipes, pidfd, status fd, cgroup folders): started
# with the usual soft limit of 1024 (systemd's default), the server must raise it itself.
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge 65536 ] || ulimit -Hn 65536
ulimit -Sn 1024
rj_server_start
CG=/sys/fs/cgroup/pids/runjob
[ -d /sys/fs/cgroup/pids ] || CG=/sys/fs/cgroup$(grep -m1 "^0::" /proc/$RJ_SERVER_PID/cgroup | cut -d: -f3)/runjob

# The gate: each job reads one line from a FIFO we hold open; a job that opens it late still
# finds its line, so releasing is exact however the jobs are scheduled.
exec 3<>"$PUB/gate"

start_crowd() { # PER_USER TAG FILE: starts PER_USER jobs for each user; "id user k code" lines
    local per=$1 tag=$2 out=$3 pids=() u k
    for u in "${USERS[@]}"; do
        (for k in $(seq 0 $((per - 1))); do
            code=$(( (${u#u} * per + k) % 256 ))
            id=$(rj_as "$u" start /bin/sh -c "echo $tag-$u-$k; read x < $PUB/gate; echo $tag-$u-$k-after; exit $code") &&
                echo "$id $u $k $code"
        done) >"$out.$u" &
        pids+=($!)
    done
    wait "${pids[@]}"
    cat "$out".u* >"$out"
}
count_running() {
    rj_as administrator list -o json 2>/dev/null | grep -o '"is_running":true' | wc -l
}
snap() {
    local p=/proc/$RJ_SERVER_PID
    echo "$(awk '/^Threads:/{print $2}' $p/status) $(ls $p/fd | wc -l) $(awk '/^VmRSS:/{print $2}' $p/status)"
}
# Zombies among the server's descendants, and the server's live children (shims).
descendants() { # PID: every descendant pid
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
# The server keeps JOB_PRESPAWN_DEFAULT (2) shims started ahead of time (core/job.c's pool),
# and one more in the cgroup of each of its PREPARED_SLOTS (2) job folders made ahead, which has
# already forked its job's command process (not exec'd yet: a "runjob shim" too, without
# children, waiting for the go). Up to 4 idle shims are expected, each with at most that one
# child; any other descendant is a shim or job process left behind.
# The pool's shims are forked by the shim template (one "runjob shim net=none --template" in the
# server's own namespaces; its shims keep that argv but are in new ones): it is no idle shim,
# and one is expected.
POOL=4
is_template() { # PID
    tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null | grep -q ' --template' &&
        [ "$(readlink /proc/"$1"/ns/pid)" = "$(readlink /proc/"$RJ_SERVER_PID"/ns/pid)" ]
}
is_shim_cmdline() { # PID
    tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null | grep -q '^[^ ]*runjob shim '
}
no_children() { # PID
    [ -z "$(cat /proc/"$1"/task/*/children 2>/dev/null)" ]
}
is_idle_shim() { # PID: a shim without a job (yet, or any more): no child but a waiting one
    local kids
    is_shim_cmdline "$1" && ! is_template "$1" || return 1
    kids=$(cat /proc/"$1"/task/*/children 2>/dev/null)
    [ -z "$kids" ] && return 0
    [ "$(echo "$kids" | wc -w)" -eq 1 ] && is_shim_cmdline $kids && no_children $kids
}
pool_shims() {
    local c n=0
    for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children 2>/dev/null); do
        is_idle_shim "$c" && n=$((n + 1))
    done
    echo "$n"
}
left_behind() { # descendants other than the idle shims and their waiting command processes
    local p k n=0 t=0
    for p in $(cat /proc/"$RJ_SERVER_PID"/task/*/children 2>/dev/null); do
        if is_idle_shim "$p"; then
            n=$((n + 1))
        elif is_template "$p" && [ "$t" -eq 0 ] && no_children "$p"; then
            t=1
        else
            echo "$p"
            for k in $(descendants "$p"); do echo "$k"; done
        fi
    done
    [ "$n" -le "$POOL" ] || echo "$n idle shims (the pool keeps $POOL)"
}

# Idle: no job running, the shim pool full (one job started and ended fills it).
rj_as u0 start /bin/true >/dev/null
for _ in $(seq 100); do [ "$(count_running)" -eq 0 ] && [ "$(pool_shims)" -eq "$POOL" ] && break; sleep 0.1; done
read -r th0 fd0 rss0 <<<"$(snap)"
thr0=$(rj_threads "$RJ_SERVER_PID")
t0=$SECONDS
start_crowd "$PER_A" a "$RJ_TMP/a"
expect_eq "$NA jobs started ($PER_A for each of 10 users)" "$NA" "$(wc -l <"$RJ_TMP/a")"
for _ in $(seq 300); do [ "$(count_running)" -ge "$NA" ] && break; sleep 0.2; done
expect_eq "all $NA run at once" "$NA" "$(count_running)"
read -r th1 fd1 rss1 <<<"$(snap)"
echo "# server with $NA running jobs: threads $th0 -> $th1, fds $fd0 -> $fd1, RSS ${rss0} KiB -> ${rss1} KiB ($((SECONDS - t0)) s to start them)"
yes "" | head -"$NA" >&3 # release them all
for _ in $(seq 300); do [ "$(count_running)" -eq 0 ] && break; sleep 0.2; done
expect_eq "all $NA ended" 0 "$(count_running)"

# Every status: the owner, the state and the exit code its own command chose.
rj_as administrator list -o json >"$RJ_TMP/list.json"
bad=$(python3 - "$RJ_TMP/a" "$RJ_TMP/list.json" <<'EOF'
import json, sys
want = {}
for line in open(sys.argv[1]):
    i, u, k, code = line.split()
    want[i] = (u, int(code))
doc = json.load(open(sys.argv[2]))
jobs = {j["id"]: j for j in (doc["jobs"] if isinstance(doc, dict) else doc)}
bad = 0
for i, (u, code) in want.items():
    j = jobs.get(i)
    if not j or j["owner"] != u or j["state"] != "exited" or j["exit_code"] != code:
        bad += 1
        if bad <= 3:
            print("job %s: want %s exit %d, got %s" % (i, u, code, j and (j["owner"], j["state"], j["exit_code"])), file=sys.stderr)
print(bad)
EOF
)
expect_eq "every status right: owner, EXITED, its own exit code" 0 "$bad"
# Every output is the job's own (each user reads its own jobs, 10 users at once).
pids=()
for u in "${USERS[@]}"; do
    (while read -r id _ k _; do
        got=$(rj_as "$u" stream "$id" 2>&1 | tr '\n' ' ')
        [ "$got" = "a-$u-$k a-$u-$k-after " ] || echo "$id: $got"
    done <"$RJ_TMP/a.$u") >"$RJ_TMP/wrong.$u" &
    pids+=($!)
done
wait "${pids[@]}"
expect_eq "every output is the job's own" "" "$(cat "$RJ_TMP"/wrong.u* | head -3)"
for _ in $(seq 50); do [ -z "$(left_behind)" ] && break; sleep 0.1; done
zombies=$(for p in $(descendants "$RJ_SERVER_PID"); do
    awk '$3 == "Z" {print $1}' /proc/"$p"/stat 2>/dev/null; done | wc -l)
expect_eq "no zombie under the server" 0 "$zombies"
expect_eq "no shim or job process left under the server (but the pool's idle shims)" "" \
    "$(left_behind)"
left=0
while read -r id _; do [ -d "$CG/$id" ] && left=$((left + 1)); done <"$RJ_TMP/a"
expect_eq "no job cgroup left" 0 "$left"
read -r th2 fd2 rss2 <<<"$(snap)"
echo "# server after the $NA jobs ended (and were each streamed): threads $th2, fds $fd0 idle -> $fd2"
# No output log stays open for an ended job nobody reads (else the fds grow with the jobs).
FD_SLACK=12 # gRPC's own fds come and go with connections; a log per job would be +$NA
[ "$fd2" -le $((fd0 + FD_SLACK)) ] && ok "fds back to idle after $NA jobs ended" ||
    fail "fds back to idle after $NA jobs ended" "$fd0 -> $fd2"
rj_expect_threads_flat "threads back to idle" "$thr0" "$(rj_threads "$RJ_SERVER_PID")"

# One old job with a bigger output, streamed by six clients at once: they share the log.
BIG='seq 1 2500000' # 18 MB: more than gRPC's and the pipe's buffers hold
want_big=$(sh -c "$BIG" | sha256sum | cut -d' ' -f1)
big=$(rj_as u3 start /bin/sh -c "$BIG")
for _ in $(seq 300); do [ "$(count_running)" -eq 0 ] && break; sleep 0.1; done
expect_eq "the big job ended" 0 "$(count_running)"
streams6() { # TAG: six concurrent streams of $big, each slow to start reading; their fds
    local i pids=() mid
    for i in 1 2 3 4 5 6; do
        (rj_as u3 stream "$big" | (sleep 1; sha256sum | cut -d' ' -f1) >"$RJ_TMP/big.$1.$i") &
        pids+=($!)
    done
    sleep 0.5
    mid=$(ls /proc/"$RJ_SERVER_PID"/fd | wc -l)
    wait "${pids[@]}"
    bad=0
    for i in 1 2 3 4 5 6; do [ "$(cat "$RJ_TMP/big.$1.$i")" = "$want_big" ] || bad=$((bad + 1)); done
    echo "$mid $bad"
}
read -r fdmid bad <<<"$(streams6 before)"
expect_eq "six concurrent streams of one ended job: byte-exact" 0 "$bad"
read -r _ fd3 _ <<<"$(snap)"
echo "# six concurrent streams of one ended job: server fds $fdmid while they ran, $fd3 after"
[ "$fd3" -le $((fd0 + FD_SLACK)) ] && ok "fds back to idle after the concurrent streams" ||
    fail "fds back to idle after the concurrent streams" "$fd0 -> $fd3"

# --- kill -9 of the server while NB jobs run (PER_B per user), with followers attached.
exec 3>&-
rm -f "$PUB/gate"
mkfifo -m 666 "$PUB/gate"
exec 4<>"$PUB/gate" # never written: these jobs wait until they are killed
start_crowd "$PER_B" b "$RJ_TMP/b"
expect_eq "$NB more jobs started" "$NB" "$(wc -l <"$RJ_TMP/b")"
for _ in $(seq 300); do [ "$(count_running)" -ge "$NB" ] && break; sleep 0.2; done
expect_eq "all $NB run" "$NB" "$(count_running)"
# Their first line is recorded before the kill.
for _ in $(seq 100); do
    n=$(rj_as administrator list -o json | grep -o '"output_bytes":[1-9]' | wc -l)
    [ "$n" -ge $((NA + NB)) ] && break
    sleep 0.1
done
pids=$(descendants "$RJ_SERVER_PID" | sort -u)
for u in u0 u5 u9; do
    read -r id _ <"$RJ_TMP/b.$u"
    rj_as "$u" stream "$id" >/dev/null 2>&1 &
done
sleep 0.5
kill -KILL "$RJ_SERVER_PID"
wait "$RJ_SERVER_PID" 2>/dev/null
alive=1
for _ in $(seq 100); do
    alive=0
    for p in $pids; do [ -d /proc/"$p" ] && ! grep -q '^State:.*Z' /proc/"$p"/status 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
done
echo "# kill -9 with $NB jobs running: $(wc -w <<<"$pids") job processes before, $alive alive after"
expect_eq "no job process survives the server's kill -9" 0 "$alive"
inside=0
while read -r id _; do
    [ -f "$CG/$id/cgroup.procs" ] && inside=$((inside + $(wc -l <"$CG/$id/cgroup.procs")))
done <"$RJ_TMP/b"
expect_eq "their cgroups are empty" 0 "$inside"
wait # the followers end with the server

unset RJ_PORT
rj_server_start
read -r _ fdr0 _ <<<"$(snap)"
rj_as administrator list -o json >"$RJ_TMP/list2.json"
read -r _ fdr1 _ <<<"$(snap)"
njobs=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(len(d["jobs"] if isinstance(d, dict) else d))' "$RJ_TMP/list2.json")
echo "# restart with $njobs old jobs: server fds $fdr0 after start, $fdr1 after a list (idle before: $fd0)"
[ "$fdr0" -le $((fd0 + FD_SLACK)) ] && ok "a restart opens none of the old jobs' logs" ||
    fail "a restart opens none of the old jobs' logs" "$fd0 -> $fdr0"
[ "$fdr1" -le $((fdr0 + 4)) ] && ok "a list (every job's output size) holds no log open" ||
    fail "a list (every job's output size) holds no log open" "$fdr0 -> $fdr1"
bad=$(python3 - "$RJ_TMP/a" "$RJ_TMP/b" "$RJ_TMP/list2.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[3]))
jobs = {j["id"]: j for j in (doc["jobs"] if isinstance(doc, dict) else doc)}
bad = 0
for path, state in ((sys.argv[1], "exited"), (sys.argv[2], "lost")):
    for line in open(path):
        i, u, k, code = line.split()
        j = jobs.get(i)
        ok = j and j["owner"] == u and j["state"] == state
        if ok and state == "exited":
            ok = j["exit_code"] == int(code)
        if ok and state == "lost":
            ok = "server restarted" in j["error"] and not j["is_running"]
        bad += not ok
print(bad)
EOF
)
expect_eq "after restart: $NA exited as before, $NB LOST with the reason" 0 "$bad"
pids=()
for u in "${USERS[@]}"; do
    (while read -r id _ k _; do
        got=$(timeout 20 "$RUNJOB" stream -H 127.0.0.1 -P "$RJ_PORT" \
            --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" --client-cert-path "$RJ_CERTS/$u-cert.pem" \
            --client-key-path "$RJ_CERTS/$u-key.pem" "$id" 2>&1)
        [ "$got" = "b-$u-$k" ] || echo "$id: $got"
    done <"$RJ_TMP/b.$u") >"$RJ_TMP/wrong.$u" &
    pids+=($!)
done
wait "${pids[@]}"
expect_eq "every LOST job's output is still there (and its stream ends)" "" \
    "$(cat "$RJ_TMP"/wrong.u* | head -3)"
# The exited jobs' output after the restart (each user its own jobs, 10 users at once).
pids=()
for u in "${USERS[@]}"; do
    (while read -r id _ k _; do
        got=$(rj_as "$u" stream "$id" 2>&1 | tr '\n' ' ')
        [ "$got" = "a-$u-$k a-$u-$k-after " ] || echo "$id: $got"
    done <"$RJ_TMP/a.$u") >"$RJ_TMP/wrong.$u" &
    pids+=($!)
done
wait "${pids[@]}"
expect_eq "after restart: every exited job's output is its own" "" "$(cat "$RJ_TMP"/wrong.u* | head -3)"
read -r fdmid bad <<<"$(streams6 after)"
expect_eq "after restart: six concurrent streams of one old job: byte-exact" 0 "$bad"
read -r _ fdr2 _ <<<"$(snap)"
echo "# after restart, $((NA + NB)) old jobs streamed and six concurrent streams of one: server fds $fdmid while they ran, $fdr2 after"
[ "$fdr2" -le $((fdr0 + 4)) ] && ok "after restart: fds back to idle after reading old jobs" ||
    fail "after restart: fds back to idle after reading old jobs" "$fdr0 -> $fdr2"
left=0
while read -r id _; do [ -d "$CG/$id" ] && left=$((left + 1)); done <"$RJ_TMP/b"
expect_eq "the restart removed their cgroups" 0 "$left"
t_done
