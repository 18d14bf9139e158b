#!/usr/bin/env bash
# With --max-restarts 1, a killed worker is restarted, joins a later epoch and
# receives the state by broadcast; the job finishes on all 3 workers.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 300 96
timeout 300 "$COHORT" launch --nproc 3 --min 2 --max-restarts 1 -- "$COHORT" train --config "$WORK/c.yaml" \
  > "$WORK/el.out" 2> "$WORK/el.err" &
launcher=$!
wait_for_step "$WORK/el.out" 40 || fail "no progress to step 40"
mapfile -t pids < <(worker_pids $launcher)
kill -9 "${pids[1]}"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0" || fail "launch exited $rc: $(tail -8 "$WORK/el.err")"
grep -q "restarting it (restart 1 of 1)" "$WORK/el.err" && pass "restarted: $(grep restarting "$WORK/el.err")" \
  || fail "no restart: $(cat "$WORK/el.err")"
[[ $(json_field "$WORK/el.out" restarts) == 1 ]] && pass "restarts = 1" || fail "restarts $(json_field "$WORK/el.out" restarts)"
epochs=$(json_field "$WORK/el.out" epochs)
# 3 epochs (start, shrink, rejoin), or 2 when the restarted worker joined
# before the controller's next round and replaced the dead one in one step.
((epochs >= 2)) && pass "epochs = $epochs (start, then shrink and rejoin in 1 or 2 steps)" || fail "epochs = $epochs"
[[ $(json_field "$WORK/el.out" world_size) == 3 ]] && pass "finished on 3 ranks, the restarted worker among them" \
  || fail "world_size $(json_field "$WORK/el.out" world_size)"
grep -q "epoch [0-9]*: 3 workers \[.*w1\.r1" "$WORK/el.err" && pass "w1.r1 joined an epoch" || fail "w1.r1 in no epoch: $(cat "$WORK/el.err")"
loss=$(json_field "$WORK/el.out" final_loss)
init=$(json_field "$WORK/el.out" initial_loss)
python3 -c "import sys; sys.exit(0 if $loss < 0.7 * $init else 1)" && pass "loss fell $init -> $loss" || fail "loss $init -> $loss"
finish
