#!/usr/bin/env bash
# The cost of checkpointing on step time (figures in docs/benchmarks.md).
#   bench/checkpoint_cost.sh [COHORT_BIN] [EVERY] [REPEATS] [STEPS] [ZERO]
# Runs the same 2-rank `mpirun cohort train` on examples/mlp.yaml's model
# (784-1024-1024-10, 128 per rank, SGD momentum) without checkpoints and with
# a checkpoint every EVERY steps (keep 2), REPEATS times each, interleaved,
# and prints the median step time of each, their ratio, the time the loop
# spent on checkpoints per step (snapshot copy + collecting the previous
# write + commit), and the shard write time on the writer thread (off the
# step's critical path), medians over the repeats. ZERO 1: ZeRO-1, so both
# ranks write half of the optimizer state. Last line: the figures as JSON.
set -euo pipefail
COHORT=${1:-build/bin/cohort}
EVERY=${2:-20}
REPEATS=${3:-3}
STEPS=${4:-200}
ZERO=${5:-0}
MPIRUN=${COHORT_MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS=1}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d /tmp/cohort-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
base() {
  cat <<YAML
seed: 42
model: {layers: [784, 1024, 1024, 10], activation: relu}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
train: {steps: $STEPS, batch_per_rank: 128, log_every: 1000}
data: {source: synthetic, samples: 60000, teacher_hidden: 64}
parallel: {zero: $ZERO}
YAML
}
base > "$WORK/none.yaml"
{ base; printf 'checkpoint: {dir: %s, every: %d, keep: 2}\n' "$WORK/ckpt" "$EVERY"; } > "$WORK/ckpt.yaml"
for ((i = 0; i < REPEATS; ++i)); do
  for mode in none ckpt; do
    rm -rf "$WORK/ckpt"
    $MPIRUN -np 2 "$COHORT" train --config "$WORK/$mode.yaml" --backend mpi > "$WORK/$mode.$i.out" 2> "$WORK/$mode.$i.err" \
      || { echo "run $mode $i failed: $(tail -3 "$WORK/$mode.$i.err")" >&2; exit 1; }
  done
done
python3 - "$WORK" "$REPEATS" "$EVERY" "$STEPS" "$ZERO" <<'PY'
import json, statistics, sys
work, repeats, every, steps, zero = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def last_json(path):
    return json.loads(open(path).read().strip().splitlines()[-1])
none = [last_json(f"{work}/none.{i}.out") for i in range(repeats)]
ck = [last_json(f"{work}/ckpt.{i}.out") for i in range(repeats)]
med = lambda xs: statistics.median(xs)
r = {
    "every": every, "steps": steps, "repeats": repeats, "zero": zero, "ranks": 2,
    "step_ms_none": med([s["step_ms"] for s in none]),
    "step_ms_ckpt": med([s["step_ms"] for s in ck]),
    "ratio": med([c["step_ms"] / n["step_ms"] for c, n in zip(ck, none)]),
    "loop_checkpoint_ms_per_step": med([s["checkpoint_ms"] for s in ck]),
    "checkpoints_committed": ck[0]["checkpoints_committed"],
    "shard_write_ms": med([s["checkpoint_write_ms"] for s in ck]),
}
print(f"2 ranks (mpirun), MLP 784-1024-1024-10, ZeRO {zero}, {steps} steps, checkpoint every {every} steps, "
      f"medians of {repeats} interleaved runs")
print(f"{'':34} {'value':>10}")
print(f"{'step time, no checkpoints (ms)':34} {r['step_ms_none']:10.2f}")
print(f"{'step time, checkpoints (ms)':34} {r['step_ms_ckpt']:10.2f}")
print(f"{'ratio (with / without)':34} {r['ratio']:10.3f}")
print(f"{'loop time on checkpoints (ms/step)':34} {r['loop_checkpoint_ms_per_step']:10.3f}")
print(f"{'shard write, rank 0 (ms/ckpt)':34} {r['shard_write_ms']:10.1f}")
print(f"{'checkpoints committed per run':34} {r['checkpoints_committed']:10d}")
print(json.dumps(r))
PY
