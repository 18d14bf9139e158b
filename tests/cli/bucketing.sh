#!/usr/bin/env bash
# Gradient bucketing: several buckets with overlap (a communication thread)
# and one bucket without give bitwise-identical parameters after 20 steps on
# 2 and 4 ranks, for each fixed backend (auto may route buckets of different
# sizes to different backends, whose sums differ in the last bit); --timeline writes a Chrome trace with every rank's compute
# and communication tracks and one all-reduce event per bucket per step.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff
small_config "$WORK/one.yaml" 20 128
cp "$WORK/one.yaml" "$WORK/many.yaml"
sed -i 's/  log_every: 5/  log_every: 5\n  bucket_mb: 0.05\n  first_bucket_mb: 0.01\n  overlap: true/' "$WORK/many.yaml"
for backend in mpi shm; do
for np in 2 4; do
  $MPIRUN -np $np "$COHORT" train --config "$WORK/one.yaml" --backend $backend --save-params "$WORK/one.$np.st" \
    > "$WORK/one.out" 2>&1 || { cat "$WORK/one.out"; fail "$backend np=$np one bucket"; continue; }
  $MPIRUN -np $np "$COHORT" train --config "$WORK/many.yaml" --backend $backend --save-params "$WORK/many.$np.st" \
    --timeline "$WORK/trace.$np.json" > "$WORK/many.out" 2>&1 || { cat "$WORK/many.out"; fail "$backend np=$np buckets"; continue; }
  buckets=$(tail -1 "$WORK/many.out" | sed -E 's/.*"buckets":([0-9]+).*/\1/')
  ((buckets == 3)) && pass "$backend np=$np: 3 buckets" || fail "$backend np=$np: $buckets buckets, want 3"
  "$DIFF" "$WORK/one.$np.st" "$WORK/many.$np.st" 0 && pass "$backend np=$np: bucketed + overlap == one bucket, bitwise" \
    || fail "$backend np=$np: bucketed gradients differ"
  python3 - "$WORK/trace.$np.json" $np <<'PY' && pass "np=$np: timeline has every rank's tracks" || fail "np=$np: timeline"
import json, sys
t = json.load(open(sys.argv[1]))["traceEvents"]
np_ = int(sys.argv[2])
for r in range(np_):
    ev = [e for e in t if e.get("pid") == r and e.get("ph") == "X"]
    names = {e["name"] for e in ev}
    assert {"forward", "backward", "optimizer", "data"} <= names, names
    assert sum(1 for e in ev if e["name"].startswith("all-reduce bucket") and e["tid"] == 1) == 3 * 20, r
PY
done
done
# bf16 compression: bucketed + overlap == one bucket, bitwise (the casts are
# element-wise); the summary names it; the parameters differ from fp32's.
for f in one many; do sed 's/  log_every: 5/  log_every: 5\n  compression: bf16/' "$WORK/$f.yaml" > "$WORK/$f.bf16.yaml"; done
$MPIRUN -np 2 "$COHORT" train --config "$WORK/one.bf16.yaml" --backend shm --save-params "$WORK/one.bf16.st" \
  > "$WORK/one.bf16.out" 2>&1 || { cat "$WORK/one.bf16.out"; fail "bf16 one bucket"; }
$MPIRUN -np 2 "$COHORT" train --config "$WORK/many.bf16.yaml" --backend shm --save-params "$WORK/many.bf16.st" \
  > "$WORK/many.bf16.out" 2>&1 || { cat "$WORK/many.bf16.out"; fail "bf16 buckets"; }
grep -q '"compression":"bf16"' "$WORK/many.bf16.out" && pass "bf16: the summary names the compression" \
  || fail "bf16: summary lacks compression"
"$DIFF" "$WORK/one.bf16.st" "$WORK/many.bf16.st" 0 && pass "bf16: bucketed + overlap == one bucket, bitwise" \
  || fail "bf16: bucketed gradients differ"
"$DIFF" "$WORK/one.2.st" "$WORK/one.bf16.st" 0 >/dev/null && fail "bf16: parameters equal fp32's (no compression?)" \
  || pass "bf16: parameters differ from fp32's"
"$DIFF" "$WORK/one.2.st" "$WORK/one.bf16.st" 0.05 && pass "bf16: within 5% of fp32's after 20 steps" \
  || fail "bf16: far from fp32"
finish
