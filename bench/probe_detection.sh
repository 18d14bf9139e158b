#!/usr/bin/env bash
# Detection of a kill -9 by the job controller's health probes alone: the
# launcher is SIGSTOPped first, so its waitpid cannot report the death; the
# time from the kill to the controller opening the worker's breaker (seen
# through a server-side watch on <job>/health/) is the detection time.
#   bench/probe_detection.sh [COHORT_BIN] [K] [extra cohort launch flags...]
# K kills (default 10), each followed by SIGCONT of the launcher, which then
# restarts the worker (--max-restarts K) before the next kill.
set -euo pipefail
COHORT=${1:-build/bin/cohort}
K=${2:-10}
shift $(($# < 2 ? $# : 2))
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d /tmp/cohort-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/c.yaml" <<YAML
seed: 3
model: {layers: [784, 128, 128, 10], activation: relu}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
train: {steps: 1000000, global_batch: 128, log_every: 1000}
data: {source: synthetic, samples: 4096}
YAML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EP=127.0.0.1:$PORT
echo "tok-$RANDOM$RANDOM" > "$WORK/token"
"$COHORT" coordinator --id 1 --peers "1=$EP" --data-dir "$WORK/data" --token-file "$WORK/token" --log-level error \
  > "$WORK/node.log" 2>&1 &
pids+=($!)
"$COHORT" launch --coordinator "$EP" --token-file "$WORK/token" --nproc 4 --min 2 --max-restarts "$K" "$@" \
  -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/out" 2> "$WORK/err" &
launcher=$!
pids+=($launcher)
for _ in $(seq 300); do grep -q "epoch 1:" "$WORK/err" && break; sleep 0.1; done
grep -q "epoch 1:" "$WORK/err" || { echo "no first epoch"; tail "$WORK/err"; exit 1; }
# Started once the node leads (a watch with no leader to ask gives up).
"$COHORT" kv --coordinator "$EP" --token-file "$WORK/token" watch job/health/ --prefix 2>"$WORK/watch.err" \
  | while IFS= read -r line; do echo "$(date +%s%3N) $line"; done > "$WORK/health" &
pids+=($!)
sleep 2
: > "$WORK/det"
for ((i = 0; i < K; ++i)); do
  mapfile -t w < <(pgrep -P $launcher)
  victim=${w[$((RANDOM % ${#w[@]}))]}
  opens=$(grep -c '"breaker":"open"' "$WORK/health" || true)
  kill -STOP $launcher
  killed=$(date +%s%3N)
  kill -9 "$victim"
  for _ in $(seq 100); do (($(grep -c '"breaker":"open"' "$WORK/health" || true) > opens)) && break; sleep 0.05; done
  seen=$(grep '"breaker":"open"' "$WORK/health" | sed -n "$((opens + 1))p" | awk '{print $1}' || true)
  kill -CONT $launcher
  [[ -n "$seen" ]] && echo $((seen - killed)) >> "$WORK/det" || echo "kill $i: not detected in 5 s"
  sleep 4
done
python3 - "$WORK/det" <<'PY'
import statistics, sys
d = [int(x) / 1e3 for x in open(sys.argv[1]).read().split()]
print(f"probe-only detection over {len(d)} kills: p50 {statistics.median(d):.3f} s  worst {max(d):.3f} s  best {min(d):.3f} s")
PY
