#!/usr/bin/env bash
# Gradient bucketing: several buckets with overlap (a communication thread)
# and one bucket without give bitwise-identical parameters after 20 steps on
# 2 and 4 ranks; --timeline writes a Chrome trace with every rank's compute
# and communication tracks and one all-reduce event per bucket per step.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff
small_config "$WORK/one.yaml" 20 128
cp "$WORK/one.yaml" "$WORK/many.yaml"
sed -i 's/  log_every: 5/  log_every: 5\n  bucket_mb: 0.05\n  first_bucket_mb: 0.01\n  overlap: true/' "$WORK/many.yaml"
for np in 2 4; do
  $MPIRUN -np $np "$COHORT" train --config "$WORK/one.yaml" --save-params "$WORK/one.$np.st" > "$WORK/one.out" 2>&1 \
    || { cat "$WORK/one.out"; fail "np=$np one bucket"; continue; }
  $MPIRUN -np $np "$COHORT" train --config "$WORK/many.yaml" --save-params "$WORK/many.$np.st" \
    --timeline "$WORK/trace.$np.json" > "$WORK/many.out" 2>&1 || { cat "$WORK/many.out"; fail "np=$np buckets"; continue; }
  buckets=$(tail -1 "$WORK/many.out" | sed -E 's/.*"buckets":([0-9]+).*/\1/')
  ((buckets == 3)) && pass "np=$np: 3 buckets" || fail "np=$np: $buckets buckets, want 3"
  "$DIFF" "$WORK/one.$np.st" "$WORK/many.$np.st" 0 && pass "np=$np: bucketed + overlap == one bucket, bitwise" \
    || fail "np=$np: bucketed gradients differ"
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
finish
