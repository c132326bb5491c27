# Helpers for test/vm/guest-tests.sh (POSIX sh: the guest runs busybox ash, not bash).
# Results: `ok NAME`, `fail NAME WHY` print the "PASS: " / "FAIL: " lines the host counts.
# Diagnostics start with "#" (the host shows them). Never skip silently: a test that cannot run
# because something it needs is missing FAILS and says why.

RUNJOB=${RUNJOB:-/bin/runjob}
RJ_TMP=/tmp/rj
RJ_CERTS=$RJ_TMP/certs
RJ_PORT=7443
RJ_SERVER_PID=
RJ_SERVER_LOG=$RJ_TMP/server.log
CG=/sys/fs/cgroup
CLIENT_TIMEOUT=60
T_PASSED=0
T_FAILED=0

ok() {
    T_PASSED=$((T_PASSED + 1))
    echo "PASS: $1"
    progress
}

fail() {
    T_FAILED=$((T_FAILED + 1))
    echo "FAIL: $1${2:+ -- $2}"
    progress
}

note() { echo "# $*"; }

# Indents a file (or stdin) as diagnostics, at most N (default 20) last lines.
show() {
    if [ -n "${1:-}" ]; then tail -n "${2:-20}" "$1"; else tail -n 20; fi | sed 's/^/#   /'
}

# Centiseconds since boot (/proc/uptime always has two decimals).
now_cs() { sed 's/ .*//; s/\.//' /proc/uptime; }

# --- the watchdog ----------------------------------------------------------------------------
# A hang anywhere in the suite would otherwise show only as the host killing qemu, with the
# console's last lines and nothing on what hung. `step NAME` (before each test) and every result
# line mark progress; with none for WD_SECS the watchdog FAILs "watchdog" with every process's
# state and kernel wait channel in that one line, the blocked tasks' kernel stacks and the
# server's log below it, then kills the clients the test waits for so that the suite can go on.
# A heartbeat line a minute tells a hung guest kernel (no heartbeat) from hung processes.
WD_SECS=${WD_SECS:-120}
RJ_PROGRESS=$RJ_TMP/progress
RJ_STEP=setup

step() {
    RJ_STEP=$1
    progress
}

progress() { echo "$RJ_STEP $(cut -d. -f1 /proc/uptime)" >"$RJ_PROGRESS" 2>/dev/null; }

# One word per user process: comm:pid:state:wchan (kernel threads, whose cmdline is empty,
# left out; so are the watchdog's own subshell and readers).
wd_processes() {
    for _d in /proc/[0-9]*; do
        [ -n "$(head -c 1 "$_d/cmdline" 2>/dev/null)" ] || continue # /proc files have size 0
        _p=${_d#/proc/}
        [ "$_p" = "$WD_PID" ] && continue
        _st=$(sed -n 's/^State:\t\(.\).*/\1/p' "$_d/status" 2>/dev/null)
        printf '%s:%s:%s:%s ' "$(cat "$_d/comm" 2>/dev/null)" "$_p" "$_st" \
            "$(cat "$_d/wchan" 2>/dev/null)"
    done
}

# The server's threads on one line (name:tid:state:wchan), the kernel stacks of every task not
# sleeping interruptibly and of the server's threads, and the server's last log lines.
wd_details() {
    _sp=$(cat "$RJ_TMP/server.pid" 2>/dev/null)
    [ -n "$_sp" ] && [ -d "/proc/$_sp" ] || _sp=
    if [ -n "$_sp" ]; then
        _l=
        for _t in /proc/"$_sp"/task/[0-9]*; do
            _l="$_l $(cat "$_t/comm" 2>/dev/null):${_t##*/}:$(sed -n 's/^State:\t\(.\).*/\1/p' \
                "$_t/status" 2>/dev/null):$(cat "$_t/wchan" 2>/dev/null)"
        done
        echo "# wd: server $_sp threads:$_l"
    fi
    for _t in /proc/[0-9]*/task/[0-9]*; do
        _st=$(sed -n 's/^State:\t\(.\).*/\1/p' "$_t/status" 2>/dev/null)
        [ -n "$_st" ] || continue # gone meanwhile
        # Sleeping tasks only if they are the server's.
        if [ "$_st" = S ] || [ "$_st" = I ]; then
            [ -n "$_sp" ] || continue
            case $_t in "/proc/$_sp/"*) ;; *) continue ;; esac
        fi
        echo "# wd: task ${_t#/proc/} $(cat "$_t/comm" 2>/dev/null) state $_st:" \
            "$(head -n 8 "$_t/stack" 2>/dev/null | sed 's/+0x.*//' | tr '\n' ' ')"
    done
    echo "# wd: server log (last lines):"
    tail -n 15 "$RJ_SERVER_LOG" 2>/dev/null | sed 's/^/# wd:   /'
}

# The clients a stuck test waits for (not the server: the next tests see to it).
wd_unstick() {
    for _d in /proc/[0-9]*; do
        _c=$(tr '\0' ' ' <"$_d/cmdline" 2>/dev/null)
        case $_c in
        "timeout -s KILL "* | "$RUNJOB ping "* | "$RUNJOB run "* | "$RUNJOB start "* | \
            "$RUNJOB stop "* | "$RUNJOB status "* | "$RUNJOB list "* | "$RUNJOB stream "*)
            kill -KILL "${_d#/proc/}" 2>/dev/null ;;
        esac
    done
}

# Runs in the background for the whole suite: wd_start, then wd_stop at the end.
wd_loop() {
    _beat=0
    while :; do
        sleep 5
        read -r _name _t <"$RJ_PROGRESS" 2>/dev/null || continue
        _now=$(cut -d. -f1 /proc/uptime)
        if [ $((_now - _beat)) -ge 60 ]; then
            echo "# heartbeat: uptime ${_now}s, in $_name since ${_t}s"
            _beat=$_now
        fi
        [ $((_now - _t)) -ge "$WD_SECS" ] || continue
        echo "FAIL: watchdog -- no progress for $((_now - _t))s in $_name; processes" \
            "(comm:pid:state:wchan): $(wd_processes)"
        wd_details
        wd_unstick
        echo "$_name $_now" >"$RJ_PROGRESS"
    done
}

wd_start() {
    progress
    wd_loop &
    WD_PID=$!
}

wd_stop() { [ -n "${WD_PID:-}" ] && kill "$WD_PID" 2>/dev/null; }

# rj_as USER VERB ARGS...: the real client against the guest server, bounded in time.
rj_as() {
    _user=$1
    shift
    _verb=$1
    shift
    timeout -s KILL "$CLIENT_TIMEOUT" "$RUNJOB" "$_verb" -H 127.0.0.1 -P "$RJ_PORT" \
        --ca-cert-path "$RJ_CERTS/root-ca-cert.pem" \
        --client-cert-path "$RJ_CERTS/$_user-cert.pem" \
        --client-key-path "$RJ_CERTS/$_user-key.pem" "$@"
}
rj() { rj_as alice "$@"; }

# The first canonical UUID in stdin.
uuid_of() {
    grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -n 1
}

# jfield NAME < json: the scalar value of the first "NAME" key (snake_case or lowerCamelCase),
# quotes stripped. Flat regex: enough for the status document, whose keys are unique enough.
jfield() {
    _snake=$1
    _camel=$(echo "$1" | awk -F_ '{ s = $1; for (i = 2; i <= NF; i++) s = s toupper(substr($i, 1, 1)) substr($i, 2); print s }')
    tr -d '\n' | grep -oE "\"($_snake|$_camel)\" *: *(\"[^\"]*\"|[-0-9.eE+]+|true|false|null)" |
        head -n 1 | sed -E 's/^[^:]*: *//; s/^"//; s/"$//'
}

# status_json ID: prints `runjob status -o json ID`; non-zero if the client failed.
status_json() { rj status -o json "$1"; }

# job_field ID NAME: one field of the job's status.
job_field() { status_json "$1" 2>/dev/null | jfield "$2"; }

# job_running ID: 0 while the job runs, 1 once it ended, 2 if status failed.
job_running() {
    _st=$(status_json "$1" 2>/dev/null) || return 2
    _r=$(echo "$_st" | jfield is_running)
    _s=$(echo "$_st" | jfield state)
    case "$_r" in
    true) return 0 ;;
    false) return 1 ;;
    esac
    case "$_s" in
    *STARTING* | *RUNNING* | starting | running | 0 | 1) return 0 ;;
    "") return 2 ;;
    *) return 1 ;;
    esac
}

# job_wait ID SECONDS: waits until the job has ended. 0 if it did, 1 on timeout/error.
job_wait() {
    _end=$(($(now_cs) + $2 * 100))
    while [ "$(now_cs)" -lt "$_end" ]; do
        job_running "$1"
        case $? in
        1) return 0 ;;
        2) return 1 ;;
        esac
        sleep 0.2
    done
    return 1
}

# start_job OUTVAR ARGS...: `runjob start ARGS...`; sets OUTVAR to the job id. Non-zero (and
# the client's output in $START_OUT) when start failed or printed no id.
start_job() {
    _var=$1
    shift
    START_OUT=$(rj start "$@" 2>&1)
    _id=$(echo "$START_OUT" | uuid_of)
    eval "$_var=\$_id"
    [ -n "$_id" ]
}

# cg_dirs ID: every cgroup directory of the job (v2: one; v1: one per hierarchy), found by name.
cg_dirs() {
    find "$CG"/ -mindepth 1 -type d -name "$1" 2>/dev/null
}

# cg_dir ID [HIER]: v2: the job's cgroup dir; v1: the job's dir in hierarchy HIER (e.g. memory).
cg_dir() {
    if [ "$RJ_MODE" = v2 ]; then
        cg_dirs "$1" | head -n 1
    else
        find "$CG/$2"/ -mindepth 1 -type d -name "$1" 2>/dev/null | head -n 1
    fi
}

# Pids of processes whose command line is exactly the words given (host view), one per line.
pids_by_cmdline() {
    _want="$*"
    for _d in /proc/[0-9]*; do
        _c=$(tr '\0' ' ' <"$_d/cmdline" 2>/dev/null | sed 's/ $//')
        [ "$_c" = "$_want" ] && echo "${_d#/proc/}"
    done
}

# cg_of PID: the process's cgroup(s) as one line (v2: the path; v1: hier:path pairs).
cg_of() {
    if [ "$RJ_MODE" = v2 ]; then
        sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null
    else
        cut -d: -f2- "/proc/$1/cgroup" 2>/dev/null | tr '\n' ' '
    fi
}

# alive PID: the process exists and is not a zombie.
alive() {
    [ -r "/proc/$1/status" ] || return 1
    ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# rj_server_start [serve flags...]: starts `runjob serve` (in cgroup $SERVER_CGROUP if set),
# waits for ping. 0 if it answers.
rj_server_start() {
    (
        if [ -n "${SERVER_CGROUP:-}" ]; then
            echo 0 >"$SERVER_CGROUP/cgroup.procs" || exit 125
        fi
        exec "$RUNJOB" serve -H 127.0.0.1 -P "$RJ_PORT" --state-dir "$RJ_TMP/state" \
            --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
            --server-cert-path "$RJ_CERTS/server-cert.pem" \
            --server-key-path "$RJ_CERTS/server-key.pem" "$@"
    ) >>"$RJ_SERVER_LOG" 2>&1 &
    RJ_SERVER_PID=$!
    echo "$RJ_SERVER_PID" >"$RJ_TMP/server.pid" # for the watchdog, a subshell
    # At most a minute in all, each ping at most 10 s: a server that takes the connection but
    # never answers must not hold the suite for 150 client deadlines.
    _end=$(($(now_cs) + 6000))
    _ct=$CLIENT_TIMEOUT
    CLIENT_TIMEOUT=10
    while [ "$(now_cs)" -lt "$_end" ]; do
        if rj ping >/dev/null 2>&1; then
            CLIENT_TIMEOUT=$_ct
            return 0
        fi
        kill -0 "$RJ_SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    CLIENT_TIMEOUT=$_ct
    return 1
}

rj_server_stop() {
    [ -n "$RJ_SERVER_PID" ] || return 0
    kill -TERM "$RJ_SERVER_PID" 2>/dev/null
    _i=0
    while kill -0 "$RJ_SERVER_PID" 2>/dev/null && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -KILL "$RJ_SERVER_PID" 2>/dev/null
    reap_server
    RJ_SERVER_PID=
}

# threads_dead PID: every thread of the process has exited (zombie or gone): `wait` returns.
threads_dead() {
    for _s in /proc/"$1"/task/*/status; do
        [ -r "$_s" ] || continue
        grep -q '^State:.*[ZX]' "$_s" 2>/dev/null || return 1
    done
    return 0
}

# Reaps the server after its SIGKILL. `wait` would block for as long as one of its threads is
# stuck in the kernel: give it 20 s, then FAIL server-exit with what every process waits on.
reap_server() {
    _end=$(($(now_cs) + 2000))
    while ! threads_dead "$RJ_SERVER_PID" && [ "$(now_cs)" -lt "$_end" ]; do sleep 0.1; done
    if ! threads_dead "$RJ_SERVER_PID"; then
        fail server-exit "server $RJ_SERVER_PID still there 20 s after SIGKILL; processes" \
            "(comm:pid:state:wchan): $(wd_processes)"
        return 1
    fi
    wait "$RJ_SERVER_PID" 2>/dev/null
}
