#!/usr/bin/env bash
# Recovery time after kill -9 of one of 4 elastic workers, K times in one job.
#   bench/elastic_recovery.sh [COHORT_BIN] [K]
# Each kill picks a random live worker; the launcher restarts it (so the job
# stays at 4). Detection: from the kill to the first of (the launcher reaping
# the child, a survivor's collective failing). Recovery: from the kill to the
# first step the final rank 0 completed after it. Prints both, p50 and worst.
set -euo pipefail
COHORT=${1:-build/bin/cohort}
K=${2:-10}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d /tmp/cohort-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/c.yaml" <<YAML
seed: 3
model: {layers: [784, 128, 128, 10], activation: relu}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
train: {steps: STEPS, global_batch: 128, log_every: 10}
data: {source: synthetic, samples: 4096}
YAML
# Probe the step time, then size the job to last about K x 4 s + 10 s.
sed "s/STEPS/60/" "$WORK/c.yaml" > "$WORK/probe.yaml"
"$COHORT" launch --nproc 4 -- "$COHORT" train --config "$WORK/probe.yaml" > "$WORK/probe.out" 2> /dev/null
step_ms=$(tail -n 1 "$WORK/probe.out" | python3 -c "import json,sys; print(json.load(sys.stdin)['step_ms'])")
steps=$(python3 -c "print(int(($K * 4000 + 10000) / max($step_ms, 1)))")
sed "s/STEPS/$steps/" "$WORK/c.yaml" > "$WORK/run.yaml"
echo "step ${step_ms} ms -> $steps steps, $K kills"
"$COHORT" launch --nproc 4 --min 2 --max-restarts "$K" -- "$COHORT" train --config "$WORK/run.yaml" \
  > "$WORK/out" 2> "$WORK/err" &
launcher=$!
sleep 5
: > "$WORK/kills"
for ((i = 0; i < K; ++i)); do
  mapfile -t pids < <(pgrep -P $launcher)
  victim=${pids[$((RANDOM % ${#pids[@]}))]}
  date +%s%3N >> "$WORK/kills"
  kill -9 "$victim"
  sleep 4
done
wait $launcher || { echo "launcher failed"; tail "$WORK/err"; exit 1; }
tail -n 1 "$WORK/out" | python3 -c "
import json, statistics, sys
s = json.load(sys.stdin)
kills = [int(x) for x in open('$WORK/kills').read().split()]
det, rec = [], []
for k, r in zip(kills, s['recoveries']):
    if 'resumed_at_ms' not in r: continue
    det.append((r['detected_at_ms'] - k) / 1e3)
    rec.append((r['resumed_at_ms'] - k) / 1e3)
print(f'kills {len(kills)}, recoveries measured {len(rec)}, epochs {s[\"epochs\"]}, restarts {s[\"restarts\"]}, final loss {s[\"final_loss\"]:.4f}')
print(f'detection  p50 {statistics.median(det):.3f} s  worst {max(det):.3f} s')
print(f'recovery   p50 {statistics.median(rec):.3f} s  worst {max(rec):.3f} s')
"
