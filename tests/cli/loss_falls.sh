#!/usr/bin/env bash
# The synthetic teacher task is learnable: examples/mlp.yaml on 2 ranks drives
# the loss (mean of the last 10 steps) below 0.7 of the first step's loss, and
# rank 0's last line of stdout is the summary JSON with the required keys.
source "$(dirname "$0")/lib.sh" "$@"
$MPIRUN -np 2 "$COHORT" train --config "$ROOT/examples/mlp.yaml" --steps 200 > "$WORK/out" 2> "$WORK/err" \
  || { cat "$WORK/err" >&2; fail "training run failed"; finish; }
cat "$WORK/out"
last=$(tail -1 "$WORK/out")
for key in world_size backend steps initial_loss final_loss samples_per_s wall_s; do
  grep -q "\"$key\":" <<< "$last" || fail "summary lacks $key"
done
ratio=$(sed -E 's/.*"loss_ratio":([0-9.eE+-]+).*/\1/' <<< "$last")
if awk -v r="$ratio" 'BEGIN { exit !(r < 0.7) }'; then pass "loss ratio $ratio < 0.7"; else fail "loss ratio $ratio >= 0.7"; fi
[[ -s $WORK/err ]] && { echo "stderr was not empty:" >&2; cat "$WORK/err" >&2; fail "ranks wrote to stderr on a healthy run"; }
progress=$(grep -c '^step ' "$WORK/out" || true)
((progress >= 2)) && pass "$progress progress lines" || fail "no progress lines"
finish
