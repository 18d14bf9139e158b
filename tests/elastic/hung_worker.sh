#!/usr/bin/env bash
# SIGSTOP of one of 4 workers: its health probes time out, the coordinator's
# job controller opens its breaker and commits an epoch without it; the other
# 3 train on. SIGCONT: the worker finds itself out of the epoch, joins again,
# its breaker closes after the cool-down, and it is taken back at a later
# epoch. The job finishes on 4 ranks with exit 0; the launcher never kills it.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 1500 128
timeout 300 "$COHORT" launch --nproc 4 --min 2 -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/el.out" 2> "$WORK/el.err" &
launcher=$!
wait_for_step "$WORK/el.out" 60 || fail "no progress to step 60"
mapfile -t pids < <(worker_pids $launcher)
victim=${pids[2]}
stopped_at=$(date +%s%3N)
kill -STOP "$victim"
for ((i = 0; i < 300; ++i)); do grep -q "evicted by the coordinator" "$WORK/el.err" && break; sleep 0.1; done
evicted_at=$(date +%s%3N)
grep -q "evicted by the coordinator" "$WORK/el.err" && pass "evicted $((evicted_at - stopped_at)) ms after SIGSTOP: $(grep -m1 'evicted by' "$WORK/el.err")" \
  || fail "no eviction within 30 s: $(cat "$WORK/el.err")"
grep -q "failed probe" "$WORK/el.err" && pass "the probes found it" || fail "eviction cause lacks the probes: $(grep 'evicted' "$WORK/el.err")"
sleep 1
kill -CONT "$victim"
for ((i = 0; i < 300; ++i)); do grep -q "answers again" "$WORK/el.err" && break; sleep 0.1; done
grep -q "answers again" "$WORK/el.err" && pass "rejoined after SIGCONT: $(grep -m1 'answers again' "$WORK/el.err")" \
  || fail "no rejoin within 30 s of SIGCONT: $(tail -5 "$WORK/el.err")"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0 after SIGSTOP and SIGCONT of one worker" || fail "launch exited $rc: $(tail -8 "$WORK/el.err")"
# Epochs: 4 workers, then 3, then 4 again (with the same member back).
grep -q "epoch [0-9]*: 3 workers" "$WORK/el.err" && pass "an epoch went on with 3" || fail "no 3-worker epoch: $(cat "$WORK/el.err")"
last4=$(grep "epoch [0-9]*: 4 workers" "$WORK/el.err" | tail -n 1 | awk '{print $4}')
((${last4%:} >= 3)) && pass "epoch ${last4%:} took it back (4 workers)" || fail "not taken back: $(grep epoch "$WORK/el.err")"
grep -q "killed by the launcher" "$WORK/el.err" && fail "the launcher killed it" || pass "the launcher did not kill it"
[[ $(json_field "$WORK/el.out" world_size) == 4 ]] && pass "finished on 4 ranks" || fail "world_size $(json_field "$WORK/el.out" world_size)"
[[ $(json_field "$WORK/el.out" steps) == 1500 ]] || fail "steps $(json_field "$WORK/el.out" steps)"
finish
