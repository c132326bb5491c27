#!/bin/bash
# A job's environment (--env, --env-file, the default), its working directory (--workdir) and
# its deadline (--timeout: stopped with the server's signal and grace, status says so), and
# the requests' checks, against a real server.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start --stop-grace 1s
cd "$RJ_TMP" || exit 1

# expect_line NAME LINE TEXT: TEXT has LINE as one whole line
expect_line() {
    if printf '%s\n' "$3" | grep -qxF -- "$2"; then ok "$1"; else fail "$1" "no line '$2' in '$3'"; fi
}

expect_eq "the default environment is PATH and HOME=/ only" \
    "HOME=/
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$(rj run /usr/bin/env | sort)"
printf '# a comment\nA=from file\n\n  B=2\r\nC=x=y\n' >"$RJ_TMP/envf"
out=$(FOO=bar rj run --env-file "$RJ_TMP/envf" --env A=flag --env FOO --env PATH=/bin /usr/bin/env)
expect_line "--env-file: lines, comments and blanks skipped, CR dropped" "B=2" "$out"
expect_line "a value may hold '='" "C=x=y" "$out"
expect_line "--env beats --env-file for the same key" "A=flag" "$out"
expect_line "--env KEY takes its value from the client's environment" "FOO=bar" "$out"
expect_line "--env replaces a default" "PATH=/bin" "$out"
expect_eq "each key once" "$(printf '%s\n' "$out" | cut -d= -f1 | sort -u | wc -l)" "$(printf '%s\n' "$out" | wc -l)"
expect_eq "a value with spaces and newlines arrives whole" "a b
c" "$(rj run --env "V=a b
c" /bin/sh -c 'printf "%s" "$V"')"
id=$(rj start --env SECRET=hunter2 /bin/true)
expect_eq "status never shows the environment" "" "$(rj status -o json "$id" | grep -o hunter2)"

expect_eq "--workdir: the command starts there" "/usr/share" "$(rj run --workdir /usr/share /bin/pwd)"
out=$(rj run --workdir /nonexistent-dir /bin/pwd 2>&1)
expect_match "--workdir that does not exist: the start fails, saying why" \
    "working directory '/nonexistent-dir': No such file or directory \(FAILED_PRECONDITION\)" "$out"
id=$(rj start --workdir /tmp /bin/true)
expect_match "status -o json carries the workdir" '"workdir": ?"/tmp"' "$(rj status -o json "$id")"

out=$(rj run --timeout 1s /bin/sleep 30 2>&1)
rc=$?
expect_match "--timeout: the job is stopped with the server's signal, and run says why" \
    "killed by SIGTERM \(timed out\)" "$out"
expect_eq "... run exits 128+15" 143 "$rc"
id=$(rj start --timeout 500ms /bin/sh -c 'trap "" TERM; sleep 30')
for _ in $(seq 60); do rj status "$id" | grep -q killed && break; sleep 0.1; done
st=$(rj status -o json "$id")
expect_match "--timeout: a job that ignores the signal is killed after the grace" '"signal": ?9' "$st"
expect_match "... and status says it timed out" '"timed_out": ?true' "$st"
expect_match "... the table's FLAGS says timeout" "timeout" "$(rj status "$id")"
expect_match "... with its timeout_millis" '"timeout_millis": ?500' "$st"
id=$(rj start --timeout 1h /bin/true)
for _ in $(seq 50); do rj status "$id" | grep -q exited && break; sleep 0.1; done
expect_match "a job that ends before its timeout did not time out" '"timed_out": ?false' "$(rj status -o json "$id")"
# a timeout survives in the record across a restart
rj_server_stop
rj_server_start --stop-grace 1s
expect_match "timed_out survives a restart" '"timed_out": ?true' "$(rj status -o json "${id:+$(rj list -o json | python3 -c 'import json,sys; print([j["id"] for j in json.load(sys.stdin)["jobs"] if j["timed_out"]][0])')}")"

# checks, in the client and in the server
expect_eq "--env =x is a usage error" 2 "$(rj run --env =x /bin/true >/dev/null 2>&1; echo $?)"
expect_eq "--env of an unset name is a usage error" 2 "$(env -u NOPE_X "$RUNJOB" run --env NOPE_X /bin/true >/dev/null 2>&1; echo $?)"
expect_eq "--env-file that does not exist is a usage error" 2 "$(rj run --env-file /nonexistent /bin/true >/dev/null 2>&1; echo $?)"
# A name no shell could give (docker refuses blanks in one too), with the file and line.
printf 'A=1\nexport C=3\n' >"$RJ_TMP/envbad1"
printf '# c\n D = 4\n' >"$RJ_TMP/envbad2"
printf 'A=1\nBAD LINE\n' >"$RJ_TMP/envbad3"
printf 'NOPE_X\n' >"$RJ_TMP/envbad4"
for f in 1 2 3 4; do
    out[f]=$(env -u NOPE_X "$RUNJOB" run --dry-run --env-file "$RJ_TMP/envbad$f" /bin/true 2>&1)
    rc[f]=$?
done
expect_eq "--env-file: bad names are usage errors" "2 2 2 2" "${rc[1]} ${rc[2]} ${rc[3]} ${rc[4]}"
expect_match "--env-file: 'export C' is named, with its file and line" \
    "--env-file $RJ_TMP/envbad1 line 2: 'export C' is not a variable name" "${out[1]}"
expect_match "--env-file: blanks around '=' are refused" "envbad2 line 2: 'D ' is not a variable name" "${out[2]}"
expect_match "--env-file: a line of words is refused as a name" "envbad3 line 2: 'BAD LINE' is not a variable name" "${out[3]}"
expect_match "--env-file: KEY alone that is not set here, with its file and line" \
    "envbad4 line 1: NOPE_X has no '=VALUE' and is not set here" "${out[4]}"
expect_eq "--workdir relative is a usage error" 2 "$(rj run --workdir tmp /bin/true >/dev/null 2>&1; echo $?)"
expect_eq "--timeout 0 is a usage error" 2 "$(rj run --timeout 0 /bin/true >/dev/null 2>&1; echo $?)"
expect_eq "--timeout soon is a usage error" 2 "$(rj run --timeout soon /bin/true >/dev/null 2>&1; echo $?)"
t_done
