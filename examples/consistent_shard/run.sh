#!/usr/bin/env bash
# Shows how the four placement schemes spread 100k dataset shards over 8, 64
# and 1024 workers, and how many shards move when one worker joins or leaves.
# Usage: examples/consistent_shard/run.sh [path/to/cohort]   (default: build/bin/cohort)
set -euo pipefail
COHORT="${1:-${COHORT:-build/bin/cohort}}"
if [[ ! -x "$COHORT" ]]; then
  echo "run.sh: no cohort binary at '$COHORT'; build first (cmake --build build) or pass its path" >&2
  exit 2
fi
for workers in 8 64 1024; do
  "$COHORT" shard --workers "$workers" --shards 100000 --join 1
  echo
  "$COHORT" shard --workers "$workers" --shards 100000 --leave 1
  echo
done
