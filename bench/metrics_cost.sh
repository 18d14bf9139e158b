#!/usr/bin/env bash
# The cost of the Prometheus endpoint on training: `cohort train` on 2 ranks
# (mpirun) without --metrics-port, and with it while a scraper reads every
# rank's endpoint every 100 ms. Runs alternate (R of each, interleaved) and the
# medians of samples/s and ms/step are printed, with the scrapes made.
#   bench/metrics_cost.sh [COHORT_BIN] [R] [CONFIG] [STEPS]
set -euo pipefail
COHORT=${1:-build/bin/cohort}
R=${2:-3}
CONFIG=${3:-examples/mlp.yaml}
STEPS=${4:-200}
MPIRUN=${COHORT_MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS=1}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d /tmp/cohort-bench.XXXXXX)
scraper=
trap '[[ -n $scraper ]] && kill $scraper 2>/dev/null; rm -rf "$WORK"' EXIT

# Scrapes every URL in FILE (one per line, appearing as the ranks start) every
# 100 ms until killed; counts successful scrapes in $WORK/scrapes.
cat > "$WORK/scraper.py" <<'EOF'
import re, sys, time, urllib.request
log, out = sys.argv[1], sys.argv[2]
ok = 0
while True:
    try:
        urls = re.findall(r"metrics on (http://\S+)", open(log).read())
    except OSError:
        urls = []
    for u in urls:
        try:
            with urllib.request.urlopen(u.replace("//0.0.0.0:", "//127.0.0.1:"), timeout=5) as r:
                r.read()
                ok += 1
        except OSError:
            pass
    open(out, "w").write(str(ok))
    time.sleep(0.1)
EOF

run() {  # run NAME [flags...]: appends "samples_per_s step_ms" to $WORK/NAME
  local name=$1; shift
  : > "$WORK/err"
  if [[ $name == metrics ]]; then
    python3 "$WORK/scraper.py" "$WORK/err" "$WORK/scrapes.$name.$i" & scraper=$!
  fi
  $MPIRUN -np 2 "$COHORT" train --config "$CONFIG" --steps "$STEPS" "$@" > "$WORK/out" 2>> "$WORK/err"
  if [[ -n $scraper ]]; then kill $scraper; wait $scraper 2>/dev/null || true; scraper=; fi
  tail -n 1 "$WORK/out" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['samples_per_s'], d['step_ms'])" >> "$WORK/$name"
}
for ((i = 0; i < R; ++i)); do
  run plain
  run metrics --metrics-port 0
done
python3 - "$WORK" "$R" "$CONFIG" "$STEPS" <<'EOF'
import glob, statistics, sys
work, r, config, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(n):
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{n}")]
    return [x[0] for x in rows], [x[1] for x in rows]
ps, pm = load("plain")
ms, mm = load("metrics")
scrapes = [int(open(f).read() or 0) for f in glob.glob(f"{work}/scrapes.metrics.*")]
print(f"cohort train, 2 ranks, {config}, {steps} steps, {r} runs each, interleaved (medians)")
print(f"{'run':<30} {'samples/s':>10} {'ms/step':>8}  runs (samples/s)")
print(f"{'no --metrics-port':<30} {statistics.median(ps):>10.0f} {statistics.median(pm):>8.2f}  {' '.join(f'{x:.0f}' for x in ps)}")
print(f"{'--metrics-port, scraped 10/s':<30} {statistics.median(ms):>10.0f} {statistics.median(mm):>8.2f}  {' '.join(f'{x:.0f}' for x in ms)}")
print(f"ratio (with / without): {statistics.median(ms) / statistics.median(ps):.3f}; scrapes per run: {scrapes}")
EOF
