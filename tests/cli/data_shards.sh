#!/usr/bin/env bash
# On-disk shards: `cohort data gen` writes them, `cohort data verify` checks
# them, and 2 ranks each read their own shards and train.
source "$(dirname "$0")/lib.sh" "$@"
"$COHORT" data gen --out "$WORK/ds" --samples 4096 --shards 4 --seed 3 > "$WORK/gen.out" || fail "data gen"
[[ $(ls "$WORK/ds" | grep -c '^shard-.*\.cds$') == 4 ]] && pass "4 shard files" || fail "expected 4 shard files"
"$COHORT" data verify "$WORK/ds" > /dev/null && pass "verify accepts intact shards" || fail "verify"
small_config "$WORK/c.yaml" 120 128
sed -i "s|source: synthetic|source: shards|; s|samples: 4096|path: $WORK/ds|" "$WORK/c.yaml"
$MPIRUN -np 2 "$COHORT" train --config "$WORK/c.yaml" > "$WORK/out" 2> "$WORK/err" || { cat "$WORK/err" >&2; fail "train on shards"; }
ratio=$(tail -1 "$WORK/out" | sed -E 's/.*"loss_ratio":([0-9.eE+-]+).*/\1/')
awk -v r="$ratio" 'BEGIN { exit !(r < 0.8) }' && pass "loss falls on shard data ($ratio)" || fail "loss ratio $ratio"
# Verify refuses a damaged shard and names it.
printf '\x01' | dd of="$WORK/ds/shard-00002-of-00004.cds" bs=1 seek=5000 conv=notrunc status=none
if "$COHORT" data verify "$WORK/ds" 2> "$WORK/verr"; then fail "verify accepted a damaged shard"; else
  grep -q "shard-00002-of-00004.cds" "$WORK/verr" && pass "verify names the damaged shard" || fail "verify message: $(cat "$WORK/verr")"
fi
finish
