#!/bin/bash
# At start the server removes the job cgroups left under its cgroup root that no job folder of
# its state directory names, but only those that cannot be another server's (servers with state
# directories of their own may share the root): named like a job id, with no process, and older
# than 60 s. Anything else under the root is left alone.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

# The job root of each hierarchy, from a running job's cgroups.
J=$(rj start /bin/sleep 60)
pid=$(rj status -o json "$J" | grep -o '"pid":[0-9]*' | cut -d: -f2)
ROOTS=()
while IFS=: read -r _ ctrl path; do
    case "$path" in */"$J") ;; *) continue ;; esac
    if [ -z "$ctrl" ]; then dir=/sys/fs/cgroup; else dir=/sys/fs/cgroup/${ctrl#name=}; fi
    [ -d "$dir${path%/*}" ] || continue
    case " ${ROOTS[*]} " in *" $dir${path%/*} "*) ;; *) ROOTS+=("$dir${path%/*}") ;; esac
done <"/proc/$pid/cgroup"
rj stop --grace 0 "$J" >/dev/null
[ "${#ROOTS[@]}" -gt 0 ] && ok "found the job root (${ROOTS[*]})" ||
    { fail "found the job root" "no cgroup of $J in /proc/$pid/cgroup"; t_done; exit; }
rj_server_stop

new_id() { cat /proc/sys/kernel/random/uuid; }
OLD=$(new_id)   # empty, two minutes old, no folder: a leftover
FRESH=$(new_id) # empty but just made: maybe another server's Start
BUSY=$(new_id)  # old but a process in it: another server's job
NOTID=runjob-test-not-a-job-id
sleep 300 &
SLEEPER=$!
cleanup_cgroups() {
    kill "$SLEEPER" 2>/dev/null
    wait "$SLEEPER" 2>/dev/null
    for r in "${ROOTS[@]}"; do
        for c in "$OLD" "$FRESH" "$BUSY" "$NOTID"; do
            [ -d "$r/$c" ] && rmdir "$r/$c" 2>/dev/null
        done
    done
}
trap 'cleanup_cgroups; rj_cleanup' EXIT
for r in "${ROOTS[@]}"; do
    mkdir -p "$r/$OLD" "$r/$FRESH" "$r/$BUSY" "$r/$NOTID" # cpu and cpuacct may be one
    touch -d '-2 min' "$r/$OLD" "$r/$BUSY" "$r/$NOTID"
done
echo "$SLEEPER" >"${ROOTS[0]}/$BUSY/cgroup.procs"

rj_server_start
count() { local n=0 r; for r in "${ROOTS[@]}"; do [ -d "$r/$1" ] && n=$((n + 1)); done; echo $n; }
expect_eq "an old, empty cgroup named like a job id with no folder is removed" 0 "$(count "$OLD")"
expect_eq "a fresh empty one is kept (another server may be starting a job in it)" \
    "${#ROOTS[@]}" "$(count "$FRESH")"
expect_eq "an old one with a process in it is kept" "${#ROOTS[@]}" "$(count "$BUSY")"
expect_eq "a cgroup not named like a job id is never touched" "${#ROOTS[@]}" "$(count "$NOTID")"
expect_match "the server says how many it removed" "removed [1-9][0-9]* leftover job cgroup" \
    "$(cat "$RJ_SERVER_LOG")"
check "the server serves" eval "rj ping >/dev/null"
t_done
