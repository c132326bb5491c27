#!/usr/bin/env bash
# `runjob serve` refuses every bad flag value before it binds or touches a cgroup: exit 2, one
# line on stderr naming the flag, nothing listening afterwards.
source "$(dirname "$0")/../lib.sh"
rj_setup

# serve_refuses NAME WORDS FLAGS...: exit 2 and a stderr line matching WORDS.
serve_refuses() {
    local name=$1 words=$2 rc err
    shift 2
    err=$(cd "$RJ_TMP" && timeout 10 "$RUNJOB" serve -H 127.0.0.1 -P 0 --state-dir "$RJ_TMP/st" \
        --client-pem-path "$RJ_CERTS/ca-clients-bundle.pem" \
        --server-cert-path "$RJ_CERTS/server-cert.pem" \
        --server-key-path "$RJ_CERTS/server-key.pem" "$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -Eq -- "$words" && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]; then
        ok "serve $name: exit 2, '$err'"
    else
        fail "serve $name" "rc=$rc, stderr: $err"
    fi
}

serve_refuses "port out of range" "--server-port" -P 70000
serve_refuses "port not a number" "--server-port" -P http
serve_refuses "size with a bad unit" "--default-limits-bytes" --default-limits-bytes 12X
serve_refuses "negative size" "--max-output-bytes" --max-output-bytes -1
serve_refuses "default above maximum" "above --max-limits-cpu" --default-limits-cpu 4000 --max-limits-cpu 2000
serve_refuses "pids default below the floor" "at least 2" --default-limits-pids 1
serve_refuses "memory maximum below the floor" "at least 1048576" --max-limits-bytes 64KiB --default-limits-bytes 64KiB
serve_refuses "cpu default below the floor" "at least 10" --default-limits-cpu 5
serve_refuses "grace above an hour" "--stop-grace" --stop-grace 2h
serve_refuses "grace not a duration" "--stop-grace" --stop-grace soon
serve_refuses "stop signal unknown" "--stop-signal" --stop-signal SIGNOPE
serve_refuses "metrics interval too short" "--metrics-interval" --metrics-interval 100ms
serve_refuses "heap trim interval too short" "--heap-trim-interval" --heap-trim-interval 100ms
serve_refuses "heap trim interval too long" "--heap-trim-interval" --heap-trim-interval 2h
serve_refuses "job user root" "root" --job-user 0
serve_refuses "job user of group root" "group 0" --job-user 65534:0
serve_refuses "job user unknown" "--job-user" --job-user no-such-user-here
serve_refuses "job user bad gid" "--job-user" --job-user 1000:x
serve_refuses "log level" "--log-level" --log-level loud
serve_refuses "log format" "--log-format" --log-format xml
serve_refuses "unknown flag" "--frobnicate" --frobnicate
serve_refuses "stray argument" "unexpected argument" extra
serve_refuses "unknown short flag" "unknown flag '-x'" -x
serve_refuses "flag without its value" "--state-dir' needs a value" --state-dir

[ -d "$RJ_TMP/st" ] && fail "refused servers made no state dir" "$(ls -la "$RJ_TMP/st")" ||
    ok "refused servers made no state dir"
t_done
