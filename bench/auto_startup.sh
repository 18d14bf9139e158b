#!/usr/bin/env bash
# bench/auto_startup.sh [COHORT_BIN] [ROUNDS]
# Setup time (wall_s - train_s of the summary: MPI init, placement, groups,
# trainer) of cohort train on 2 ranks, 1 step: --backend mpi, auto with the
# cache warm, auto --recalibrate; interleaved, N rounds.
set -euo pipefail
COHORT=${1:-build/bin/cohort}
N=${2:-5}
export OPENBLAS_NUM_THREADS=1
W=$(mktemp -d /tmp/cohort-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export COHORT_CACHE_DIR=$W/cache
cat > $W/c.yaml <<YAML
seed: 3
model: {layers: [784, 1024, 1024, 10], activation: relu}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
train: {steps: 1, global_batch: 256, log_every: 1}
data: {source: synthetic, samples: 4096}
YAML
run() { mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OPENBLAS_NUM_THREADS=1 -x COHORT_CACHE_DIR \
  $COHORT train --config $W/c.yaml "$@" 2>/dev/null | tail -1 | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f" % (j["wall_s"]-j["train_s"]))'; }
run --backend auto > /dev/null  # fills the cache
for ((i = 0; i < N; ++i)); do
  echo "mpi $(run --backend mpi) auto_cached $(run --backend auto) auto_recalibrate $(run --backend auto --recalibrate)"
done
