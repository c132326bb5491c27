#!/bin/bash
# The server gives memory back after bursts: floods of connections that never finish a
# handshake leave their buffers free in malloc's arenas, pinned under a few live blocks, and
# without --heap-trim-interval's malloc_trim the resident size climbed with every flood.
. "$(dirname "$0")/../lib.sh"
case $RUNJOB in *asan* | *tsan*)
    echo "SKIP: heap trim -- judged on the release build (a sanitizer's allocator is not glibc's)"
    exit 0 ;;
esac
rj_setup
rj_server_start --heap-trim-interval 1s

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$RJ_SERVER_PID/status"; }
# A call first, so that idle includes what the first TLS handshake sets up for good.
rj ping >/dev/null 2>&1
sleep 1.5
idle=$(rss)
figures=()
for round in 1 2 3 4; do
    rj_flood 300 1 >/dev/null
    rj_flood 300 1 >/dev/null
    sleep 2.5 # the handshakes time out or fail, and a trim runs
    figures+=("$(rss)")
done
echo "# heap trim: RSS idle $idle KiB, after each round of 600 connections: ${figures[*]} KiB"
# Without trimming: ~+10 MiB after the first round and ~+1 MiB more with each one after it.
if [ "${figures[3]}" -le $((idle + 6144)) ]; then
    ok "RSS back near idle after the floods ($idle -> ${figures[3]} KiB)"
else
    fail "RSS back near idle after the floods" "idle $idle KiB, then ${figures[*]} KiB"
fi
if [ "${figures[3]}" -le $((figures[1] + 2048)) ]; then
    ok "RSS does not climb from flood to flood (${figures[1]} -> ${figures[3]} KiB)"
else
    fail "RSS does not climb from flood to flood" "${figures[*]} KiB"
fi
rj ping >/dev/null 2>&1 && ok "the server still serves" || fail "the server still serves" "ping failed"
t_done
