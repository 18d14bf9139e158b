#!/usr/bin/env bash
# CPU step time of train.precision fp32 vs bf16 vs fp16 on examples/mlp.yaml
# (784-1024-1024-10, batch 128, SGD momentum), 1 rank, one BLAS thread.
# Runs the precisions interleaved, ROUNDS times each, and prints the median of
# each run's step_ms and forward/backward/optimizer split, plus the ratio to
# fp32 (compare within one run: these machines are shared and noisy).
#
#   bench/precision_cpu.sh [COHORT_BIN] [STEPS] [ROUNDS]      (defaults: build/bin/cohort 50 3)
set -euo pipefail
cd "$(dirname "$0")/.."
COHORT=${1:-build/bin/cohort}
STEPS=${2:-50}
ROUNDS=${3:-3}
[[ -x $COHORT ]] || { echo "precision_cpu.sh: $COHORT is not an executable (build first)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/cohort-precision.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1
PRECISIONS=(fp32 bf16 fp16)
for p in "${PRECISIONS[@]}"; do
  sed "s/^train:/train:\n  precision: $p/" examples/mlp.yaml > "$WORK/$p.yaml"
done
field() { sed -E "s/.*\"$2\":([0-9.eE+-]+).*/\\1/" <<< "$1"; }
for ((r = 0; r < ROUNDS; ++r)); do
  for p in "${PRECISIONS[@]}"; do
    last=$("$COHORT" train --config "$WORK/$p.yaml" --steps "$STEPS" --threads 1 | tail -1)
    echo "$p $(field "$last" step_ms) $(field "$last" forward_ms) $(field "$last" backward_ms) $(field "$last" optimizer_ms)" \
      >> "$WORK/runs"
  done
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-9s %10s %12s %12s %13s %9s\n' precision step_ms forward_ms backward_ms optimizer_ms vs_fp32
base=""
for p in "${PRECISIONS[@]}"; do
  cols=()
  for c in 2 3 4 5; do cols+=("$(awk -v p="$p" -v c="$c" '$1 == p { print $c }' "$WORK/runs" | median)"); done
  [[ -z $base ]] && base=${cols[0]}
  printf '%-9s %10.2f %12.2f %12.2f %13.2f %8.2fx\n' "$p" "${cols[@]}" "$(awk -v a="${cols[0]}" -v b="$base" 'BEGIN { print a / b }')"
done
echo "(median of $ROUNDS interleaved runs of $STEPS steps each; $COHORT train --config examples/mlp.yaml + train.precision)"
