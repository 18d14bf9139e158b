# Shared helpers for the end-to-end tests. Usage: source lib.sh COHORT_BIN REPO_ROOT
set -euo pipefail
COHORT=$1
ROOT=$2
MPIRUN=${COHORT_MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader -x OPENBLAS_NUM_THREADS=1}
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d /tmp/cohort-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failures=0
source "$(dirname "${BASH_SOURCE[0]}")/../ports.sh"

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
finish() {
  if ((failures > 0)); then echo "$failures check(s) failed" >&2; exit 1; fi
  echo "all checks passed"
}
# Writes a small, fast config. Args: file, then extra "key: value" lines are
# appended by the caller with cat >>.
small_config() {
  cat > "$1" <<YAML
seed: 3
model:
  layers: [784, 128, 128, 10]
  activation: relu
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
train:
  steps: ${2:-25}
  global_batch: ${3:-128}
  log_every: 5
data:
  source: synthetic
  samples: 4096
YAML
}
