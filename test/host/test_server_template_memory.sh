#!/usr/bin/env bash
# Where the shim template's shims share its address space, each runs on memory the template
# maps for it: that memory must go once the shim ends, however it ends (its command exited, the
# job stopped, the exec failed, the shim killed), or a server left running for months grows with
# every job. Where they are forked, the template must not grow either.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

# The template: the server's child still in the server's pid namespace (its shims, also the
# server's children, are each PID 1 of a namespace of their own).
template_pid() {
    local c
    for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children 2>/dev/null); do
        grep -q -- '--template' /proc/"$c"/cmdline 2>/dev/null || continue
        [ "$(awk '/^NSpid:/ { print NF - 1 }' /proc/"$c"/status)" = 1 ] && { echo "$c"; return; }
    done
}
rj_as alice run /bin/true >/dev/null 2>&1 # the pool and its template are up after a first job
T=$(template_pid)
if [ -z "$T" ]; then
    echo "SKIP: template checks -- no shim template (exec'd shims only on this host)"
    exit 0
fi
shim=$(for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children); do
    [ "$c" != "$T" ] && grep -q -- '--template' /proc/"$c"/cmdline 2>/dev/null && echo "$c"
done | head -n 1)
if [ -n "$shim" ] && [ "$(cut -d' ' -f23 /proc/"$shim"/stat)" = "$(cut -d' ' -f23 /proc/"$T"/stat)" ]; then
    echo "# the template's shims share its memory"
else
    echo "# the template's shims are forked (its OOM score: $(cat /proc/"$T"/oom_score_adj))"
fi
maps_before=$(wc -l </proc/"$T"/maps)
rss_before=$(awk '/^VmRSS:/ { print $2 }' /proc/"$T"/status)
fds_before=$(ls /proc/"$T"/fd | wc -l)

for i in $(seq 20); do rj_as alice run /bin/true >/dev/null 2>&1; done
for i in $(seq 5); do rj_as alice run /nonexistent >/dev/null 2>&1; done
ids=()
for i in $(seq 5); do ids+=("$(rj_as alice start /bin/sleep 60)"); done
for id in "${ids[@]}"; do rj_as alice stop "$id" >/dev/null 2>&1; done
# Shims killed outright (as the OOM killer or an admin would), waiting in the pool.
for c in $(cat /proc/"$RJ_SERVER_PID"/task/*/children); do
    [ "$c" = "$T" ] && continue
    grep -q -- '--template' /proc/"$c"/cmdline 2>/dev/null && kill -9 "$c" 2>/dev/null
done
sleep 0.5
for i in $(seq 5); do rj_as alice run /bin/true >/dev/null 2>&1; done

expect_eq "the template is the same process" "$T" "$(template_pid)"
maps_after=$(wc -l </proc/"$T"/maps)
rss_after=$(awk '/^VmRSS:/ { print $2 }' /proc/"$T"/status)
fds_after=$(ls /proc/"$T"/fd | wc -l)
check "the template's mappings do not grow with jobs ($maps_before -> $maps_after)" \
    test "$maps_after" -le $((maps_before + 6))
check "the template's memory does not grow with jobs ($rss_before -> $rss_after KiB)" \
    test "$rss_after" -le $((rss_before + 1024))
check "the template's fds do not grow with jobs ($fds_before -> $fds_after)" \
    test "$fds_after" -le $((fds_before + 6))
t_done
