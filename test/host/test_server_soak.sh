#!/bin/bash
# A bounded soak: many short jobs run and followed to their end (runjob run), with ended jobs
# removed one second after they end (--retain-ended 1s), while readers follow a long job and
# unauthenticated connection floods come and go. The server must stay flat: resident memory,
# fds, its own threads, the state directory's size and job folders, and the job cgroups; and
# nothing streamed is lost. The figures are printed ("# soak: ...") for bench/RESULTS.md.
#
# SOAK_JOBS overrides the number of short jobs (default 600). Under a sanitizer build it is
# skipped (SOAK_JOBS runs it anyway): those tiers run every other host script, and their
# allocators make memory figures meaningless.
. "$(dirname "$0")/../lib.sh"
case $RUNJOB in *asan* | *tsan*)
    if [ -z "${SOAK_JOBS:-}" ]; then
        echo "SKIP: soak -- judged on the release build (sanitizer tiers run the other scripts)"
        exit 0
    fi ;;
esac
rj_setup
# Free heap goes back to the system every second: each round's figures are taken settled.
rj_server_start --retain-ended 1s --max-output-bytes 64K --heap-trim-interval 1s
cd "$RJ_TMP" || exit 1

JOBS=${SOAK_JOBS:-600}
ids=$RJ_TMP/ids

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$RJ_SERVER_PID/status"; }
fds() { ls "/proc/$RJ_SERVER_PID/fd" | wc -l; }
state_kb() { du -sk "$RJ_STATE" | cut -f1; }
folders() { find "$RJ_STATE" -mindepth 1 -maxdepth 1 -type d -regextype egrep \
    -regex '.*/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | wc -l; }
# The job cgroups left of the jobs this server started (other servers share the root).
cgroups_left() {
    local n=0 id root
    root=/sys/fs/cgroup/pids/runjob
    [ -d "$root" ] || root=/sys/fs/cgroup$(grep -m1 '^0::' "/proc/$RJ_SERVER_PID/cgroup" | cut -d: -f3)/runjob
    while read -r id; do [ -n "$id" ] && [ -d "$root/$id" ] && n=$((n + 1)); done <"$ids"
    echo "$n"
}
# one_job I: a job whose output is its number and 3000 bytes; says LOST when its run did not
# print exactly that, or exited otherwise than 0.
one_job() {
    local i=$1 out want
    want="$i $(printf 'a%.0s' $(seq 3000))"
    out=$("$RUNJOB" run -H 127.0.0.1 -P "$RJ_PORT" --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
        --client-cert-path "$RJ_CERTS/alice-cert.pem" --client-key-path "$RJ_CERTS/alice-key.pem" \
        /bin/sh -c 'printf "%s " "$1"; n=0; while [ $n -lt 300 ]; do printf aaaaaaaaaa; n=$((n+1)); done' \
        sh "$i" 2>&1) || { echo "LOST $i: exit $?"; return; }
    [ "$out" = "$want" ] || echo "LOST $i: got ${#out} bytes"
}
export -f one_job
export RUNJOB RJ_PORT RJ_CERTS

# round N: N short jobs, 8 at a time, while two floods of 300 connections come and go.
round() {
    local fl
    (sleep 2; rj_flood 300 3; sleep 2; rj_flood 300 3) >/dev/null &
    fl=$!
    RJ_PIDS+=("$fl")
    seq "$1" | xargs -P 8 -I{} bash -c 'one_job {}' >>"$RJ_TMP/jobs.out" 2>&1
    wait "$fl" 2>/dev/null
    sleep 2.5 # retention (1 s) and its sweep (every 0.5 s) take the last jobs
}

rss_idle=$(rss)
# Readers that follow a long job the whole time: each must get every line.
long=$(rj start -j ticker /bin/sh -c 'i=0; while [ $i -lt 600 ]; do echo "tick $i"; i=$((i+1)); sleep 0.05; done')
followers=()
for r in 1 2 3; do
    rj stream "$long" >"$RJ_TMP/follow.$r" 2>&1 &
    followers+=($!)
    RJ_PIDS+=($!)
done

# The first round brings the server to its working size (gRPC's buffers, malloc's arenas for
# its threads, the pools); the second must leave everything where the first left it.
start=$SECONDS
round $((JOBS / 2))
rss0=$(rss) fds0=$(fds) thr0=$(rj_threads "$RJ_SERVER_PID") kb0=$(state_kb) dirs0=$(folders)
round $((JOBS - JOBS / 2))
secs=$((SECONDS - start))
rss1=$(rss) fds1=$(fds) thr1=$(rj_threads "$RJ_SERVER_PID") kb1=$(state_kb) dirs1=$(folders)
# Every job the server started, from its audit lines (the jobs themselves are gone by now).
grep -oE 'method=Start job=[0-9a-f-]{36}' "$RJ_SERVER_LOG" | cut -d= -f3 >"$ids"
for p in "${followers[@]}"; do wait "$p" 2>/dev/null; done

echo "# soak: $JOBS jobs in $secs s (two rounds), 3 followers, 4 floods of 300 connections"
echo "# soak: RSS idle $rss_idle KiB, after round 1 ${rss0} KiB, after round 2 ${rss1} KiB"
echo "# soak: fds $fds0 -> $fds1, threads (ours gRPC) $thr0 -> $thr1"
echo "# soak: state dir $kb0 -> $kb1 KiB, job folders $dirs0 -> $dirs1"
expect_eq "every short job's output came back whole" "" "$(grep LOST "$RJ_TMP/jobs.out" | head -5)"
for r in 1 2 3; do
    expect_eq "follower $r got every line of the long job" 600 "$(grep -c '^tick ' "$RJ_TMP/follow.$r")"
done
case $RUNJOB in
*asan* | *tsan*) # their allocators keep freed memory aside (quarantine, shadow): not ours
    echo "# soak: RSS not judged under a sanitizer build" ;;
*)
    # Each figure is taken after a heap trim (every second here), so what malloc kept of the
    # floods' and the clients' buffers is gone: +36 KiB for 300 jobs on this machine (+6 to
    # +9 MiB untrimmed). It must not grow with the jobs: at most 2 MiB plus 16 KiB per job of
    # the second round.
    n2=$((JOBS - JOBS / 2))
    if [ "$rss1" -le $((rss0 + 2048 + 16 * n2)) ]; then ok "RSS flat (${rss0} -> ${rss1} KiB)"; else
        fail "RSS flat" "${rss0} -> ${rss1} KiB over $n2 jobs"; fi ;;
esac
if [ "$fds1" -le $((fds0 + 4)) ]; then ok "fds flat ($fds0 -> $fds1)"; else fail "fds flat" "$fds0 -> $fds1"; fi
rj_expect_threads_flat "threads flat" "$thr0" "$thr1"
# The long job itself is the one folder that may remain (its retention runs from its end).
if [ "$dirs1" -le $((dirs0 + 1)) ]; then ok "ended jobs went away ($dirs0 -> $dirs1 folders)"; else
    fail "ended jobs went away" "$dirs0 -> $dirs1 folders"; fi
if [ "$kb1" -le $((kb0 + 256)) ]; then ok "state directory flat ($kb0 -> $kb1 KiB)"; else
    fail "state directory flat" "$kb0 -> $kb1 KiB"; fi
expect_eq "no job cgroup left behind" 0 "$(cgroups_left)"
check "the server still serves" rj ping
t_done
