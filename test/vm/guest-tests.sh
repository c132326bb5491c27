#!/bin/sh
# The guest side of the VM tier (POSIX sh for busybox ash), run by /init as root in a fresh
# guest whose /sys/fs/cgroup is either cgroup2 (RJ_MODE=v2) or only v1 hierarchies (RJ_MODE=v1).
# A real `runjob serve` with fresh certificates on 127.0.0.1, driven by the real client verbs.
# RJ_TESTS (space-separated names) runs a subset; the setup steps always run.
. /tests/guest-lib.sh

RJ_MODE=${RJ_MODE:-v2}
mkdir -p "$RJ_TMP"
SERVER_UP=0
# Server flags added by tests/env (none by default: the io limits must reach vda through the
# server's default device list, "every real disk").
SERVE_FLAGS=${SERVE_FLAGS:-}

want() {
    [ -z "${RJ_TESTS:-}" ] && return 0
    for _t in $RJ_TESTS; do [ "$_t" = "$1" ] && return 0; done
    return 1
}

# need_server NAME: fails NAME (and returns 1) when there is no server to test against.
need_server() {
    [ "$SERVER_UP" = 1 ] && return 0
    fail "$1" "no running server (see server-start)"
    return 1
}

# The v1 hierarchy holding a controller's files.
v1_hier() {
    case $1 in
    cpu | cpuacct) echo cpu,cpuacct ;;
    io) echo blkio ;;
    *) echo "$1" ;;
    esac
}

# --- the guest itself ------------------------------------------------------------------------

t_cgroup_layout() {
    if [ "$RJ_MODE" = v2 ]; then
        if ! grep -q " $CG cgroup2 " /proc/mounts; then
            fail cgroup-layout "$CG is not a cgroup2 mount"
            return
        fi
        c=$(cat "$CG/cgroup.controllers")
        for k in cpu io memory pids; do
            case " $c " in
            *" $k "*) ;;
            *)
                fail cgroup-layout "controller $k missing from '$c'"
                return
                ;;
            esac
        done
        echo "+cpu +io +memory +pids" >"$CG/cgroup.subtree_control"
        mkdir "$CG/probe"
        for f in cgroup.kill memory.peak memory.max io.max cpu.max pids.max; do
            if [ ! -e "$CG/probe/$f" ]; then
                fail cgroup-layout "a child cgroup has no $f"
                rmdir "$CG/probe"
                return
            fi
        done
        rmdir "$CG/probe"
        ok cgroup-layout
        note "v2 controllers: $c"
    else
        if grep -q ' cgroup2 ' /proc/mounts; then
            fail cgroup-layout "a cgroup2 hierarchy is mounted in v1 mode"
            return
        fi
        for h in cpu,cpuacct memory blkio pids freezer; do
            if ! grep -q " $CG/$h cgroup " /proc/mounts; then
                fail cgroup-layout "$CG/$h is not a cgroup v1 mount"
                return
            fi
        done
        ok cgroup-layout
    fi
}

t_version() {
    out=$("$RUNJOB" --version 2>&1)
    case $out in
    runjob\ *) ok runjob-version ;;
    *) fail runjob-version "runjob --version printed '$out'" ;;
    esac
    out=$(/bin/jobmanager --version 2>&1)
    case $out in
    runjob\ *) ok jobmanager-symlink ;;
    *) fail jobmanager-symlink "jobmanager --version printed '$out'" ;;
    esac
}

t_certs() {
    if ! "$RUNJOB" certs -q --out "$RJ_CERTS" --user alice --user bob --user administrator \
        >"$RJ_TMP/certs.log" 2>&1; then
        fail certs "runjob certs failed"
        show "$RJ_TMP/certs.log"
        return
    fi
    for f in root-ca-cert.pem ca-clients-bundle.pem server-cert.pem server-key.pem \
        alice-cert.pem alice-key.pem bob-cert.pem bob-key.pem; do
        if [ ! -s "$RJ_CERTS/$f" ]; then
            fail certs "runjob certs made no $f"
            ls -l "$RJ_CERTS" 2>&1 | show
            return
        fi
    done
    ok certs
}

# --- the server ------------------------------------------------------------------------------

# v2: the server runs in a non-root cgroup (/sys/fs/cgroup/srv), as under a service manager
# that delegates a subtree; the root enables the controllers for it, and the server itself must
# keep the no-internal-process rule inside srv.
t_server_start() {
    SERVER_CGROUP=
    if [ "$RJ_MODE" = v2 ]; then
        echo "+cpu +io +memory +pids" >"$CG/cgroup.subtree_control"
        mkdir -p "$CG/srv"
        SERVER_CGROUP=$CG/srv
    fi
    # A job's /dev is its own (no disk of the host's), and this kernel has no disk file system
    # built in: the io tests reach the scratch disk, as the job user, through a node of it
    # outside /dev, as a host may hand a job a device.
    if [ -b /dev/vda ] && [ ! -b /mnt/vda ]; then
        mkdir -p /mnt
        mknod -m 0666 /mnt/vda b "$(cut -d: -f1 /sys/block/vda/dev)" "$(cut -d: -f2 /sys/block/vda/dev)" ||
            note "io: could not make /mnt/vda"
    fi
    # shellcheck disable=SC2086
    if SERVER_CGROUP=$SERVER_CGROUP rj_server_start $SERVE_FLAGS; then
        SERVER_UP=1
        ok server-start
        note "server pid $RJ_SERVER_PID, cgroup $(cg_of "$RJ_SERVER_PID")"
    else
        fail server-start "runjob serve did not answer ping; its log:"
        show "$RJ_SERVER_LOG" 30
    fi
}

# The command starts inside the job's cgroup: from the host's side the running command sits in
# the job's cgroup (every hierarchy on v1), and the command's own /proc/self/cgroup, read as
# its first act, is the root of a cgroup namespace rooted there.
t_cgroup_first() {
    need_server cgroup-first || return
    # sleep 37: a number no other test uses, long enough for a slow TCG guest; stopped below.
    if ! start_job id /bin/sh -c 'cat /proc/self/cgroup; exec sleep 37'; then
        fail cgroup-first "start failed: $START_OUT"
        return
    fi
    sp=
    for _ in $(seq 50); do # the shell exec's sleep once it has printed its cgroup
        sp=$(pids_by_cmdline sleep 37 | head -n 1)
        [ -n "$sp" ] && break
        sleep 0.2
    done
    dirs=$(cg_dirs "$id")
    if [ -z "$dirs" ]; then
        fail cgroup-first "no cgroup directory named $id under $CG"
        job_wait "$id" 10
        return
    fi
    bad=
    npids=0
    for d in $dirs; do
        npids=$((npids + $(wc -l <"$d/cgroup.procs")))
    done
    [ "$npids" -ge 1 ] || bad="job cgroup holds no process while the job runs"
    # Host view of the command (sleep 37 replaced the shell): its cgroup is the job's.
    if [ -z "$sp" ]; then
        bad="${bad:+$bad; }cannot find the job's 'sleep 37' process within 10 s"
    else
        if [ "$RJ_MODE" = v2 ]; then
            hc=$(sed -n 's/^0:://p' "/proc/$sp/cgroup")
            case $hc in */"$id") ;; *) bad="${bad:+$bad; }host view of the command's cgroup is '$hc'" ;; esac
        else
            for h in cpu memory blkio pids freezer; do
                hc=$(grep -E "^[0-9]+:([^:]*,)?$h(,[^:]*)?:" "/proc/$sp/cgroup" | cut -d: -f3)
                case $hc in */"$id") ;; *) bad="${bad:+$bad; }$h: host view is '$hc'" ;; esac
            done
        fi
    fi
    rj stop --grace 0 "$id" >/dev/null 2>&1
    job_wait "$id" 15 || bad="${bad:+$bad; }job did not end after stop"
    out=$(rj stream "$id" 2>/dev/null)
    # The job's cgroup namespace is rooted at its own cgroup (the shim unshares it once it is
    # in the job cgroup: clone3 CLONE_INTO_CGROUP on v2, attach before "go" on v1), so the
    # command, reading /proc/self/cgroup as its first act, sees exactly "/" in every hierarchy.
    # Anything else ("/../runjob/ID", a host path) means it started elsewhere or sees the host.
    if [ "$RJ_MODE" = v2 ]; then
        line=$(echo "$out" | grep '^0::' | head -n 1)
        [ "$line" = "0::/" ] || bad="${bad:+$bad; }the command read /proc/self/cgroup as '$out'"
    else
        for h in cpu memory blkio pids freezer; do
            hc=$(echo "$out" | grep -E "^[0-9]+:([^:]*,)?$h(,[^:]*)?:" | cut -d: -f3)
            [ "$hc" = / ] || bad="${bad:+$bad; }$h: the command read '$hc'"
        done
    fi
    [ -z "$bad" ] && ok cgroup-first || fail cgroup-first "$bad"
    note "command's /proc/self/cgroup: $(echo "$out" | tr '\n' ' ')"
}

t_run_exit_code() {
    need_server run-exit-code || return
    out=$(rj run /bin/sh -c 'echo hello-from-job; exit 7' 2>&1)
    rc=$?
    if [ "$rc" = 7 ] && echo "$out" | grep -q hello-from-job; then
        ok run-exit-code
    else
        fail run-exit-code "runjob run exited $rc, printed '$out' (want 7 and hello-from-job)"
    fi
}

# run -i: our stdin reaches the job's (an Input call into its pipe), EOF included.
t_run_stdin() {
    need_server run-stdin || return
    out=$(printf 'a\nb\n' | rj run -i /bin/sh -c 'wc -l' 2>&1)
    rc=$?
    out=$(echo "$out" | tr -d ' ')
    if [ "$rc" = 0 ] && [ "$out" = 2 ]; then
        ok run-stdin
    else
        fail run-stdin "printf 'a\\nb\\n' | runjob run -i sh -c 'wc -l' exited $rc, printed '$out' (want 0 and 2)"
    fi
}

t_list_stream() {
    need_server list-stream || return
    if ! start_job id /bin/sh -c 'echo line-one; echo line-two >&2; sleep 1; echo line-three'; then
        fail list-stream "start failed: $START_OUT"
        return
    fi
    # A following stream started while the job runs ends when it ends, with all output.
    out=$(rj stream "$id" 2>&1)
    rc=$?
    bad=
    for w in line-one line-two line-three; do
        echo "$out" | grep -q "$w" || bad="${bad:+$bad; }stream lacks $w"
    done
    [ "$rc" = 0 ] || bad="${bad:+$bad; }stream exited $rc"
    lst=$(rj list 2>&1) || bad="${bad:+$bad; }list failed: $lst"
    echo "$lst" | grep -q "$id" || bad="${bad:+$bad; }list lacks $id"
    [ -z "$bad" ] && ok list-stream || fail list-stream "$bad"
}

# Jobs apart from each other on this kernel too: each its own uid (two at once differ), a /dev
# of its own (the minimal set, a devpts whose ptys are not the guest's), its own rlimits.
t_isolation() {
    need_server job-isolation || return
    bad=
    start_job a /bin/sh -c 'id -u; sleep 2' || bad="start failed: $START_OUT"
    start_job b /bin/sh -c 'id -u; sleep 2' || bad="${bad:+$bad; }start failed: $START_OUT"
    ua=$(rj stream "$a" 2>/dev/null | head -1)
    ub=$(rj stream "$b" 2>/dev/null | head -1)
    case "$ua$ub" in '' | *[!0-9]*) bad="${bad:+$bad; }uids '$ua' '$ub'" ;; esac
    [ "$ua" != "$ub" ] || bad="${bad:+$bad; }two concurrent jobs share uid $ua"
    devs=$(rj run /bin/ls /dev 2>&1 | tr '\n' ' ')
    [ "$devs" = "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero " ] ||
        bad="${bad:+$bad; }ls /dev in a job: '$devs'"
    lim=$(rj run /bin/sh -c 'echo $(ulimit -n) $(ulimit -Hn) $(ulimit -c)' 2>&1)
    case $lim in "1024 "*" 0") ;; *) bad="${bad:+$bad; }rlimits '$lim', want 1024 soft and no core" ;; esac
    note "isolation: uids $ua $ub; rlimits $lim"
    [ -z "$bad" ] && ok job-isolation || fail job-isolation "$bad"
}

# cpu.max: a busy loop limited to 500 millis is throttled and gets about half a CPU.
t_cpu() {
    need_server cpu-throttle || return
    if ! start_job id --cpu 500 /bin/sh -c 'while :; do :; done'; then
        fail cpu-throttle "start failed: $START_OUT"
        return
    fi
    bad=
    if [ "$RJ_MODE" = v2 ]; then
        d=$(cg_dir "$id")
        lim=$(cat "$d/cpu.max" 2>/dev/null)
        [ "$lim" = "50000 100000" ] || bad="cpu.max is '$lim', want '50000 100000'"
    else
        d=$(cg_dir "$id" cpu,cpuacct)
        lim="$(cat "$d/cpu.cfs_quota_us" 2>/dev/null)/$(cat "$d/cpu.cfs_period_us" 2>/dev/null)"
        [ "$lim" = "50000/100000" ] || bad="cfs quota/period is '$lim', want 50000/100000"
    fi
    sleep 0.5
    u1=$(job_field "$id" cpu_usec)
    t1=$(now_cs)
    th1=$(sed -n 's/^nr_throttled //p' "$d/cpu.stat" 2>/dev/null)
    sleep 3
    u2=$(job_field "$id" cpu_usec)
    t2=$(now_cs)
    th2=$(sed -n 's/^nr_throttled //p' "$d/cpu.stat" 2>/dev/null)
    rj stop -g 0 "$id" >/dev/null 2>&1
    job_wait "$id" 20 || bad="${bad:+$bad; }job did not end after stop"
    if [ -z "$th1" ] || [ -z "$th2" ] || [ "$th2" -le "$th1" ]; then
        bad="${bad:+$bad; }nr_throttled did not grow ('$th1' -> '$th2')"
    fi
    case "$u1$u2" in
    *[!0-9]* | "")
        bad="${bad:+$bad; }status gave no usage cpu_usec ('$u1', '$u2')"
        ;;
    *)
        # Share of one CPU, in percent, over the sampling interval.
        pct=$(((u2 - u1) / (t2 - t1) / 100))
        note "cpu: $((u2 - u1)) us of CPU in $(((t2 - t1) * 10)) ms = ${pct}% of a CPU (limit 50%)"
        # The limit is the upper bound; the lower one only shows the loop really ran (a busy
        # host running these TCG vCPUs can take some of the guest's time).
        if [ "$pct" -lt 25 ] || [ "$pct" -gt 60 ]; then
            bad="${bad:+$bad; }busy loop got ${pct}% of a CPU, want about 50"
        fi
        ;;
    esac
    [ -z "$bad" ] && ok cpu-throttle || fail cpu-throttle "$bad"
}

# memory.max: a 64 MiB allocation under a 32 MiB limit is OOM-killed, and status says so.
t_memory() {
    need_server memory-oom || return
    if ! start_job id --memory 32M /bin/dd if=/dev/zero of=/dev/null bs=64M count=2; then
        fail memory-oom "start failed: $START_OUT"
        return
    fi
    if ! job_wait "$id" 30; then
        fail memory-oom "job did not end"
        rj stop "$id" >/dev/null 2>&1
        return
    fi
    st=$(status_json "$id" 2>&1)
    oom=$(echo "$st" | jfield oom_killed)
    state=$(echo "$st" | jfield state)
    sig=$(echo "$st" | jfield signal)
    if [ "$oom" = true ]; then
        ok memory-oom
    else
        fail memory-oom "oom_killed='$oom' state='$state' signal='$sig'"
        echo "$st" | show
    fi
    lim=$(echo "$st" | jfield memory_bytes)
    [ "$lim" = 33554432 ] && ok memory-limit-reported ||
        fail memory-limit-reported "status limits.memory_bytes='$lim', want 33554432"
}

# The shim template's shims share its memory here (root with every capability: their OOM score
# can be -1000), and one job's OOM kill must stay that job's: the kernel kills every process
# that shares its victim's memory, so a shim picked by the OOM killer would take every job down.
# Job B fills its /dev/shm (charged to it, in nobody's RSS) past its limit next to job A.
t_oom_isolation() {
    need_server oom-isolation || return
    tmpl="" shim=""
    for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children 2>/dev/null); do
        tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q -- --template || continue
        if [ "$(awk '/^NSpid:/ { print NF - 1 }' "/proc/$c/status")" = 1 ]; then tmpl=$c; else shim=$c; fi
    done
    vs_t=$(awk '{ print $23 }' "/proc/$tmpl/stat" 2>/dev/null)
    vs_s=$(awk '{ print $23 }' "/proc/$shim/stat" 2>/dev/null)
    adj=$(cat "/proc/$shim/oom_score_adj" 2>/dev/null)
    if [ -n "$vs_t" ] && [ "$vs_t" = "$vs_s" ] && [ "$adj" = -1000 ]; then
        ok shims-share-memory
    else
        fail shims-share-memory "template $tmpl vsize '$vs_t', shim $shim vsize '$vs_s' oom_score_adj '$adj'"
    fi
    out=$(rj run /bin/sh -c 'cat /proc/self/oom_score_adj; (echo -1 >/proc/self/oom_score_adj) 2>/dev/null && echo lowered' 2>&1)
    [ "$out" = 0 ] && ok oom-score-of-a-job || fail oom-score-of-a-job "'$out' (want 0, and no way lower)"
    if ! start_job a /bin/sleep 60; then
        fail oom-isolation "start failed: $START_OUT"
        return
    fi
    if ! start_job b --memory 32M /bin/sh -c 'dd if=/dev/zero of=/dev/shm/x bs=1M count=64 2>/dev/null; sleep 1'; then
        fail oom-isolation "start failed: $START_OUT"
        rj stop "$a" >/dev/null 2>&1
        return
    fi
    job_wait "$b" 30
    bad=""
    [ "$(job_field "$b" oom_killed)" = true ] || bad="job b was not OOM-killed: $(status_json "$b" 2>&1 | tr -d '\n')"
    job_running "$a" || bad="${bad:+$bad; }job a ended with job b's OOM: $(status_json "$a" 2>&1 | tr -d '\n')"
    alive "$tmpl" || bad="${bad:+$bad; }the template ($tmpl) died"
    out=$(rj run /bin/echo after 2>&1)
    [ "$out" = after ] || bad="${bad:+$bad; }a job after: '$out'"
    rj stop "$a" >/dev/null 2>&1
    [ -z "$bad" ] && ok oom-isolation || fail oom-isolation "$bad"
}

# Usage: CPU time and peak memory of a finished job come back in status.
t_usage() {
    need_server usage || return
    if ! start_job id /bin/dd if=/dev/zero of=/dev/null bs=16M count=30; then
        fail usage "start failed: $START_OUT"
        return
    fi
    job_wait "$id" 30 || {
        fail usage "job did not end"
        return
    }
    st=$(status_json "$id" 2>&1)
    cpu=$(echo "$st" | jfield cpu_usec)
    peak=$(echo "$st" | jfield memory_peak_bytes)
    code=$(echo "$st" | jfield exit_code)
    note "usage: cpu_usec=$cpu memory_peak_bytes=$peak exit_code=$code"
    bad=
    case $cpu in '' | *[!0-9]*) bad="cpu_usec='$cpu'" ;; *) [ "$cpu" -gt 0 ] || bad="cpu_usec is 0" ;; esac
    case $peak in
    '' | *[!0-9]*) bad="${bad:+$bad; }memory_peak_bytes='$peak'" ;;
    *) [ "$peak" -ge 16777216 ] || bad="${bad:+$bad; }memory_peak_bytes=$peak < the 16 MiB dd buffer" ;;
    esac
    [ -z "$bad" ] && ok usage || {
        fail usage "$bad"
        echo "$st" | show
    }
}

# io.max / blkio.throttle: a direct-IO dd on the scratch disk holds near its bps limit.
# dur_of ID: the job's duration in ms, from status.
dur_of() {
    _st=$(status_json "$1" 2>/dev/null)
    _s=$(echo "$_st" | jfield start_time_ms)
    _e=$(echo "$_st" | jfield end_time_ms)
    case "$_s$_e" in '' | *[!0-9]*) echo "" ;; *) echo $((_e - _s)) ;; esac
}
t_io() {
    need_server io-limit || return
    if [ ! -b /dev/vda ]; then
        fail io-limit "no /dev/vda in the guest"
        return
    fi
    if [ ! -b /mnt/vda ]; then
        fail io-limit "no node /mnt/vda of the scratch disk"
        return
    fi
    dev=$(cat /sys/block/vda/dev)
    # Unlimited baseline, then 6 MiB at 2 MiB/s: about 3 s.
    start_job base /bin/dd if=/dev/zero of=/mnt/vda bs=1M count=6 oflag=direct ||
        { fail io-limit "start failed: $START_OUT"; return; }
    job_wait "$base" 30
    tb=$(dur_of "$base")
    start_job id --wbps 2097152 /bin/dd if=/dev/zero of=/mnt/vda bs=1M count=6 oflag=direct ||
        { fail io-limit "start failed: $START_OUT"; return; }
    sleep 0.5
    bad=
    if [ "$RJ_MODE" = v2 ]; then
        lim=$(grep "^$dev " "$(cg_dir "$id")/io.max" 2>/dev/null)
        case $lim in *wbps=2097152*) ;; *) bad="io.max has no wbps=2097152 for vda ($dev): '$lim'" ;; esac
    else
        lim=$(grep "^$dev " "$(cg_dir "$id" blkio)/blkio.throttle.write_bps_device" 2>/dev/null)
        [ "$lim" = "$dev 2097152" ] || bad="blkio.throttle.write_bps_device for vda ($dev): '$lim'"
    fi
    job_wait "$id" 40 || bad="${bad:+$bad; }limited dd did not end"
    tl=$(dur_of "$id")
    code=$(job_field "$id" exit_code)
    note "io: 6 MiB direct write unlimited ${tb}ms, at wbps=2MiB/s ${tl}ms (exit $code)"
    case "$tb$tl" in
    '' | *[!0-9]*) bad="${bad:+$bad; }no start/end times in status ('$tb', '$tl')" ;;
    *)
        [ "$tl" -ge 2000 ] && [ "$tl" -le 9000 ] || bad="${bad:+$bad; }limited write took ${tl}ms, want ~3000"
        [ $((tb * 2)) -lt "$tl" ] || bad="${bad:+$bad; }unlimited write took ${tb}ms: the limit is not what slowed it"
        ;;
    esac
    [ "$code" = 0 ] || bad="${bad:+$bad; }dd exit code '$code'"
    [ -z "$bad" ] && ok io-limit-write || fail io-limit-write "$bad"

    # Reads: 4 MiB at 2 MiB/s.
    start_job id --rbps 2097152 /bin/dd if=/mnt/vda of=/dev/null bs=1M count=4 iflag=direct ||
        { fail io-limit-read "start failed: $START_OUT"; return; }
    bad=
    job_wait "$id" 40 || bad="limited read did not end"
    tl=$(dur_of "$id")
    code=$(job_field "$id" exit_code)
    note "io: 4 MiB direct read at rbps=2MiB/s ${tl}ms (exit $code)"
    case "$tl" in
    '' | *[!0-9]*) bad="${bad:+$bad; }no duration ('$tl')" ;;
    *) [ "$tl" -ge 1300 ] && [ "$tl" -le 7000 ] || bad="${bad:+$bad; }limited read took ${tl}ms, want ~2000" ;;
    esac
    [ "$code" = 0 ] || bad="${bad:+$bad; }dd exit code '$code'"
    [ -z "$bad" ] && ok io-limit-read || fail io-limit-read "$bad"
}

# pids.max: a fork bomb (every process forks copies of itself forever; one whose fork fails
# exits, which lets another fork) never has more than 20 processes, and the kernel reports the
# refused forks. The command itself is `sleep 60`, stopped once sampled (for at most 3 s; on a
# busy TCG host ten samples can take longer than 8 s, so the sleep is long); --memory keeps the
# guest alive if the pids limit does not hold (then the test fails on pids.current).
t_pids() {
    need_server pids-limit || return
    if ! start_job id --pids 20 --memory 128M /bin/sh -c 'f() { while :; do f & done; }; f & exec sleep 60'; then
        fail pids-limit "start failed: $START_OUT"
        return
    fi
    d=$(cg_dir "$id" pids)
    bad=
    [ "$(cat "$d/pids.max" 2>/dev/null)" = 20 ] || bad="pids.max is '$(cat "$d/pids.max" 2>/dev/null)'"
    maxcur=0
    ev=0
    i=0
    end=$(($(now_cs) + 300))
    while [ $i -lt 10 ] && [ "$(now_cs)" -lt "$end" ] && [ -d "$d" ]; do
        c=$(cat "$d/pids.current" 2>/dev/null)
        [ -n "$c" ] && [ "$c" -gt "$maxcur" ] && maxcur=$c
        e=$(sed -n 's/^max //p' "$d/pids.events" 2>/dev/null)
        [ -n "$e" ] && ev=$e
        sleep 0.3
        i=$((i + 1))
    done
    note "pids: max pids.current seen $maxcur, pids.events max $ev"
    [ "$maxcur" -le 20 ] || bad="${bad:+$bad; }pids.current reached $maxcur"
    [ "$ev" -gt 0 ] || bad="${bad:+$bad; }pids.events shows no fork refused"
    job_running "$id" || bad="${bad:+$bad; }the job ended before stop (state $(job_field "$id" state))"
    rj stop -g 0 "$id" >/dev/null 2>&1
    job_wait "$id" 20 || bad="${bad:+$bad; }job did not end after stop"
    [ -z "$(cg_dirs "$id")" ] || bad="${bad:+$bad; }cgroup left behind"
    [ -z "$bad" ] && ok pids-limit || fail pids-limit "$bad"
}

# stop: a daemon that left the command's session and ignores SIGTERM still dies (the whole
# cgroup is killed after the grace period) and the job's cgroup directories are removed.
t_stop() {
    need_server stop-kills-daemon || return
    if ! start_job id /bin/sh -c 'trap "" TERM; setsid /bin/sh -c "exec sleep 4321" </dev/null >/dev/null 2>&1 & exec sleep 1234'; then
        fail stop-kills-daemon "start failed: $START_OUT"
        return
    fi
    bad=
    i=0
    dp=
    while [ $i -lt 20 ] && [ -z "$dp" ]; do
        dp=$(pids_by_cmdline sleep 4321 | head -n 1)
        [ -n "$dp" ] || sleep 0.2
        i=$((i + 1))
    done
    if [ -z "$dp" ]; then
        fail stop-kills-daemon "the daemon grandchild never appeared"
        rj stop "$id" >/dev/null 2>&1
        return
    fi
    note "stop: daemon pid $dp (sid $(cut -d' ' -f6 "/proc/$dp/stat")), cgroup $(cg_of "$dp")"
    t0=$(now_cs)
    out=$(rj stop -g 1s "$id" 2>&1) || bad="stop failed: $out"
    t1=$(now_cs)
    note "stop took $(((t1 - t0) * 10)) ms"
    i=0
    while alive "$dp" && [ $i -lt 20 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    alive "$dp" && bad="${bad:+$bad; }daemon $dp survived stop"
    job_running "$id" && bad="${bad:+$bad; }job still running after stop"
    left=$(cg_dirs "$id")
    [ -z "$left" ] || bad="${bad:+$bad; }cgroup left behind: $left"
    [ -z "$bad" ] && ok stop-kills-daemon || fail stop-kills-daemon "$bad"
    alive "$dp" && kill -KILL "$dp" 2>/dev/null
}

# v2's no-internal-process rule: with the server started inside /sys/fs/cgroup/srv, srv holds no
# process of its own once job cgroups (which need controllers) exist below it.
t_no_internal() {
    if [ "$RJ_MODE" != v2 ]; then
        note "no-internal-process: a cgroup v2 rule; nothing to check in v1 mode"
        return 0
    fi
    need_server no-internal-process || return
    if ! start_job id --cpu 300 --memory 64M --pids 50 /bin/sleep 3; then
        fail no-internal-process "start failed: $START_OUT"
        return
    fi
    bad=
    procs=$(cat "$CG/srv/cgroup.procs")
    [ -z "$procs" ] || bad="srv/cgroup.procs holds '$(echo $procs)'"
    sc=$(cat "$CG/srv/cgroup.subtree_control")
    for k in cpu io memory pids; do
        case " $sc " in *" $k "*) ;; *) bad="${bad:+$bad; }srv/cgroup.subtree_control lacks $k ('$sc')" ;; esac
    done
    d=$(cg_dir "$id")
    case $d in "$CG/srv/"*) ;; *) bad="${bad:+$bad; }job cgroup '$d' is not below srv" ;; esac
    sv=$(sed -n 's/^0:://p' "/proc/$RJ_SERVER_PID/cgroup")
    case $sv in /srv/*) ;; *) bad="${bad:+$bad; }server's cgroup is '$sv'" ;; esac
    note "server in $sv, job in ${d#$CG}"
    job_wait "$id" 15 || bad="${bad:+$bad; }job did not end"
    [ -z "$bad" ] && ok no-internal-process || fail no-internal-process "$bad"
}

# Prepared job slots hold their job's cgroup, made ahead (a Start then only writes the limits;
# on v2 it clones the shim into it or moves a pooled one there). A server killed with -9 leaves
# them; the next one removes them, and its Starts run in fresh ones.
t_restart_prepared() {
    need_server restart-prepared || return
    bad=
    ids=
    for d in "$RJ_TMP"/state/*-*-*-*-*; do
        [ -d "$d" ] && [ ! -e "$d/status" ] && ids="$ids ${d##*/}"
    done
    n=0
    for id in $ids; do [ -n "$(cg_dirs "$id")" ] && n=$((n + 1)); done
    [ -n "$ids" ] && [ "$n" -gt 0 ] && [ "$n" = "$(echo $ids | wc -w)" ] ||
        bad="prepared slots '$ids', $n with a cgroup"
    kill -KILL "$RJ_SERVER_PID" 2>/dev/null
    reap_server
    # The server moved itself into the "server" leaf of its cgroup on its first start.
    srv=${SERVER_CGROUP:+$SERVER_CGROUP/server}
    # shellcheck disable=SC2086
    if ! SERVER_CGROUP=$srv rj_server_start $SERVE_FLAGS; then
        SERVER_UP=0
        fail restart-prepared "the server did not come back after kill -9; its log:"
        show "$RJ_SERVER_LOG" 30
        return
    fi
    for id in $ids; do
        left=$(cg_dirs "$id")
        [ -z "$left" ] || bad="${bad:+$bad; }left after the restart: $left"
    done
    out=$(rj run /bin/sh -c 'echo after-restart' 2>&1)
    echo "$out" | grep -q after-restart || bad="${bad:+$bad; }a job after the restart: '$out'"
    [ -z "$bad" ] && ok restart-prepared || fail restart-prepared "$bad"
}

t_server_stop() {
    [ "$SERVER_UP" = 1 ] || return 0
    rj_server_stop
    left=$(find "$CG"/ -mindepth 1 -type d -path '*runjob/*' 2>/dev/null)
    [ -z "$left" ] && ok server-stop-clean || fail server-stop-clean "job cgroups left: $left"
}

# A job cgroup made ahead with the server's default limits gets only the differing ones written
# at its start (cg_change_limits): test/vm/cg_change checks, on this kernel's cgroups, that
# cg_create(from) then cg_change_limits(from, to) reads like cg_create(to) in every file.
t_change_limits() {
    if [ ! -x /tests/cg_change ]; then
        fail cgroup-change-limits "no /tests/cg_change in the initramfs (make tests builds it)"
        return
    fi
    out=$(/tests/cg_change 2>&1)
    rc=$?
    echo "$out" | show
    [ "$rc" = 0 ] && ok cgroup-change-limits || fail cgroup-change-limits "exit $rc, see above"
}

# --- run -------------------------------------------------------------------------------------
note "tests: ${RJ_TESTS:-all} (mode $RJ_MODE)"
wd_start
want cgroup-layout && step cgroup-layout && t_cgroup_layout
want runjob-version && step runjob-version && t_version
want cgroup-change-limits && step cgroup-change-limits && t_change_limits
step certs && t_certs
step server-start && t_server_start
want cgroup-first && step cgroup-first && t_cgroup_first
want run-exit-code && step run-exit-code && t_run_exit_code
want run-stdin && step run-stdin && t_run_stdin
want list-stream && step list-stream && t_list_stream
want job-isolation && step job-isolation && t_isolation
want no-internal-process && step no-internal-process && t_no_internal
want cpu-throttle && step cpu-throttle && t_cpu
want memory-oom && step memory-oom && t_memory
want oom-isolation && step oom-isolation && t_oom_isolation
want usage && step usage && t_usage
want io-limit && step io-limit && t_io
want stop-kills-daemon && step stop-kills-daemon && t_stop
want pids-limit && step pids-limit && t_pids
want restart-prepared && step restart-prepared && t_restart_prepared
step server-stop && t_server_stop
if [ "$T_FAILED" -gt 0 ] && [ -s "$RJ_SERVER_LOG" ]; then
    note "server log (last lines):"
    show "$RJ_SERVER_LOG" 25
fi
wd_stop
note "guest: $T_PASSED passed, $T_FAILED failed (a watchdog FAIL is counted by the host only)"
