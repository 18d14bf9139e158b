# Check helpers shared by cluster_test.sh and partition_test.sh (sourced).
# fail() records a failed check and goes on; die() prints the node logs and
# every earlier failure (again, after the logs, where a truncated CI tail still
# shows them) and exits. Needs $WORK (the nodes write $WORK/node*.log).
failures=0
source "$(dirname "${BASH_SOURCE[0]}")/../../ports.sh"
FAILED=()
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); FAILED+=("$*"); }
pass() { echo "ok: $*"; }
die() {
  for f in "$WORK"/node*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done
  for m in "${FAILED[@]}"; do echo "FAIL: $m" >&2; done
  echo "FAIL: $*" >&2; exit 1
}
now_ms() { date +%s%3N; }
