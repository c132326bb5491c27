#!/bin/bash
# Authorisation matrix: alice, bob, administrator. Another user's job answers NOT_FOUND with
# the same words as an unknown id; the administrator sees (with owners) and stops every job.
. "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

A=$(rj_as alice start --name a-job /bin/sleep 60)
B=$(rj_as bob start --name b-job /bin/sleep 60)
expect_match "alice starts a job" '^[0-9a-f-]{36}$' "$A"
expect_match "bob starts a job" '^[0-9a-f-]{36}$' "$B"
UNKNOWN=3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f

for verb in status stop stream; do
    out=$(rj_as bob "$verb" "$A" 2>&1)
    rc=$?
    expect_match "bob $verb alice's job: NOT_FOUND" 'NOT_FOUND' "$out"
    [ "$rc" -ne 0 ] && ok "bob $verb alice's job fails" || fail "bob $verb alice's job fails" "rc 0"
    unk=$(rj_as bob "$verb" "$UNKNOWN" 2>&1)
    expect_eq "bob $verb: same words as for an unknown id" "${unk//$UNKNOWN/ID}" "${out//$A/ID}"
done

out=$(rj_as alice list 2>&1)
expect_match "alice lists her job" "$A" "$out"
printf '%s' "$out" | grep -q "$B" && fail "alice does not see bob's job" || ok "alice does not see bob's job"
out=$(rj_as bob list 2>&1)
printf '%s' "$out" | grep -q "$A" && fail "bob does not see alice's job" || ok "bob does not see alice's job"
out=$(rj_as administrator list -o json 2>&1)
expect_match "administrator sees alice's job" "$A" "$out"
expect_match "administrator sees bob's job" "$B" "$out"
expect_match "administrator sees owners" '"owner": *"alice"' "$out"
expect_match "administrator sees owners (bob)" '"owner": *"bob"' "$out"
out=$(rj_as administrator ping 2>&1)
expect_match "administrator is admin" 'administrator \(administrator\)|admin' "$out"

check "administrator reads alice's job status" rj_as administrator status "$A"
check "administrator stops bob's job" rj_as administrator stop --grace 100ms "$B"
out=$(rj_as bob status "$B" 2>&1)
expect_match "bob's job was stopped" 'killed|exited' "$out"
check "alice stops her own job" rj_as alice stop --grace 100ms "$A"

# Name reuse: free once the named job ended; taken while it runs.
N1=$(rj_as alice start --name dup /bin/sleep 60)
out=$(rj_as alice start --name dup /bin/true 2>&1)
expect_match "a running job's name is taken" 'ALREADY_EXISTS' "$out"
check "another user may use the same name" rj_as bob start --name dup /bin/true
rj_as alice stop --grace 100ms "$N1" >/dev/null
check "the name is free once the job ended" rj_as alice start --name dup /bin/true
t_done
