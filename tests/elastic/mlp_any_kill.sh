#!/usr/bin/env bash
# Chaos on the real example: `cohort launch --nproc 4 --min 2 -- cohort train
# --config examples/mlp.yaml` and a kill -9 of a seeded random worker at a
# seeded random moment (0.5 to 15 s after the start: before, during or after
# the first epoch forms). The job finishes with exit 0 on 3 ranks, every step
# applied once (steps_run - steps_redone = train.steps) and the loss falls.
# ELASTIC_SEED=S replays one choice; the seed is printed.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
SEED=${ELASTIC_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
delay_ms=$((500 + RANDOM % 14500))
slot=$((RANDOM % 4))
echo "seed $SEED: kill -9 of worker slot $slot at $delay_ms ms (replay: ELASTIC_SEED=$SEED)"
steps=$(awk '$1 == "steps:" { print $2 }' "$ROOT/examples/mlp.yaml")
timeout 300 "$COHORT" launch --nproc 4 --min 2 -- "$COHORT" train --config "$ROOT/examples/mlp.yaml" \
  > "$WORK/el.out" 2> "$WORK/el.err" &
launcher=$!
sleep "$(python3 -c "print($delay_ms / 1000)")"
mapfile -t pids < <(worker_pids $launcher)
((${#pids[@]} > slot)) || fail "only ${#pids[@]} workers running at $delay_ms ms"
kill -9 "${pids[$slot]}"
echo "killed pid ${pids[$slot]} at $(grep '^step' "$WORK/el.out" | tail -n 1 | awk '{print $2}' || echo 'no step yet')"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0 (seed $SEED)" || fail "launch exited $rc (seed $SEED): $(tail -8 "$WORK/el.err")"
[[ $(json_field "$WORK/el.out" world_size) == 3 ]] && pass "finished on 3 ranks" || fail "world_size $(json_field "$WORK/el.out" world_size) (seed $SEED)"
run=$(json_field "$WORK/el.out" steps_run); redone=$(json_field "$WORK/el.out" steps_redone)
((run - redone == steps)) && pass "no step applied twice: steps_run $run - steps_redone $redone = $steps" \
  || fail "steps_run $run - steps_redone $redone != $steps (seed $SEED)"
loss=$(json_field "$WORK/el.out" final_loss); init=$(json_field "$WORK/el.out" initial_loss)
python3 -c "import sys; sys.exit(0 if $loss < 0.5 * $init else 1)" && pass "loss fell $init -> $loss" || fail "loss $init -> $loss (seed $SEED)"
finish
