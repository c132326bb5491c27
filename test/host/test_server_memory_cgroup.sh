#!/usr/bin/env bash
# On cgroup v1 a job's shim stays out of the job's memory cgroup (it waits in the job root, the
# parent of every job's cgroup) and its command's process joins it alone: the OOM killer of a
# job's memory cgroup then never picks a shim, which may share the shim template's memory with
# every other job's. Every other hierarchy holds both; the job sees "/" in each of its own, and
# nothing of the host's layout in its shim's. Checked for a pooled shim (a private network),
# an exec'd one (the host's network) and one started after the pool ran dry.
. "$(dirname "$0")/../lib.sh"

MEM=/sys/fs/cgroup/memory
if [ ! -d "$MEM" ] || [ "$(stat -f -c %T "$MEM")" != cgroupfs ]; then
    echo "SKIP: memory cgroup checks -- no cgroup v1 memory hierarchy on this host"
    exit 0
fi
rj_setup
rj_server_start --allow-host-network
if [ ! -d "$MEM/runjob" ]; then
    echo "SKIP: memory cgroup checks -- the server did not use cgroup v1"
    exit 0
fi

# cgroup_of PID HIER: the path of PID's cgroup in hierarchy HIER (as /proc/PID/cgroup has it).
cgroup_of() {
    grep -E "^[0-9]+:([^:]*,)?$2(,[^:]*)?:" /proc/"$1"/cgroup | cut -d: -f3
}

# The shim of job ID: the server's child whose freezer cgroup is the job's.
shim_of() {
    local c
    for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children 2>/dev/null); do
        [ "$(cgroup_of "$c" freezer)" = "/runjob/$1" ] && { echo "$c"; return; }
    done
}

# check_job NAME ID: where the job's shim and its command (the shim's one child) are.
check_job() {
    local name=$1 id=$2 shim cmd h bad=
    for _ in $(seq 50); do
        shim=$(shim_of "$id")
        [ -n "$shim" ] && cmd=$(cat /proc/"$shim"/task/*/children 2>/dev/null | awk '{ print $1 }')
        [ -n "$cmd" ] && break
        sleep 0.1
    done
    if [ -z "$shim" ] || [ -z "$cmd" ]; then
        fail "$name: the job's shim and command" "shim '$shim', command '$cmd'"
        return
    fi
    expect_eq "$name: the shim's memory cgroup is the job root" /runjob "$(cgroup_of "$shim" memory)"
    expect_eq "$name: the command's memory cgroup is the job's" "/runjob/$id" "$(cgroup_of "$cmd" memory)"
    for h in cpu cpuacct blkio pids freezer; do
        [ "$(cgroup_of "$shim" $h)" = "/runjob/$id" ] || bad="$bad shim:$h=$(cgroup_of "$shim" $h)"
        [ "$(cgroup_of "$cmd" $h)" = "/runjob/$id" ] || bad="$bad command:$h=$(cgroup_of "$cmd" $h)"
    done
    expect_eq "$name: both in the job's cgroup of every other hierarchy" "" "$bad"
    check "$name: the job's memory cgroup holds the command alone" \
        test "$(cat "$MEM/runjob/$id/cgroup.procs")" = "$cmd"
}

rj_as alice run /bin/true >/dev/null 2>&1 # the pool is up after a first job
a=$(rj_as alice start /bin/sleep 60)
check_job "a pooled shim" "$a"
b=$(rj_as alice start --network host /bin/sleep 60)
check_job "an exec'd shim" "$b"
# More at once than the pool holds: some shims are started on demand.
ids=()
for i in $(seq 6); do ids+=("$(rj_as alice start /bin/sleep 60)"); done
check_job "the last of six at once" "${ids[5]}"

# What the job sees: "/" in every hierarchy of its own; its shim (PID 1) one level up in the
# memory one, nothing of the host's.
out=$(rj_as alice run /bin/cat /proc/self/cgroup)
bad=$(echo "$out" | awk -F: '$3 != "/"')
expect_eq "the command sees / in every hierarchy" "" "$bad"
out=$(rj_as alice run --network host /bin/cat /proc/1/cgroup)
expect_eq "the job sees its shim's memory cgroup as /.." "/.." \
    "$(echo "$out" | grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' | cut -d: -f3)"

# The memory the command uses is the job's: a job writing 16 MiB to its /dev/shm.
id=$(rj_as alice start /bin/sh -c 'head -c 16M /dev/zero > /dev/shm/f; sleep 60')
for _ in $(seq 50); do
    used=$(cat "$MEM/runjob/$id/memory.usage_in_bytes" 2>/dev/null || echo 0)
    [ "$used" -ge $((16 << 20)) ] && break
    sleep 0.1
done
check "a job's memory is charged to its memory cgroup ($used bytes)" test "$used" -ge $((16 << 20))

for j in "$a" "$b" "$id" "${ids[@]}"; do rj_as alice stop "$j" >/dev/null 2>&1; done
for j in "$a" "$b" "$id" "${ids[@]}"; do
    for _ in $(seq 100); do [ -d "$MEM/runjob/$j" ] || break; sleep 0.1; done
done
left=$(for j in "$a" "$b" "$id" "${ids[@]}"; do [ -d "$MEM/runjob/$j" ] && echo "$j"; done)
expect_eq "stopped jobs leave no memory cgroup" "" "$left"
t_done
