#!/usr/bin/env bash
# Growth: a job started by one launcher (2 workers, --min 2 --max 4) on a
# one-node `cohort coordinator` grows when a second launcher (2 more) arrives
# while it trains: a new epoch takes all 4, the newcomers receive the state by
# broadcast, both launchers exit 0, and the final epoch has 4 ranks.
# `elastic.lr: linear` rescales the learning rate with the global batch.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
STEPS=1500
NODE=
cleanup() {
  [[ -n "$NODE" ]] && kill -9 "$NODE" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

small_config "$WORK/c.yaml" $STEPS 128  # 64 a rank over the first launcher's 2
printf 'elastic:\n  lr: linear\n' >> "$WORK/c.yaml"
P=$(free_ports 1)
echo "s3cret-$RANDOM-$RANDOM" > "$WORK/token"
"$COHORT" coordinator --id 1 --peers "1=127.0.0.1:$P" --data-dir "$WORK/data" --token-file "$WORK/token" \
  --log-level warn > "$WORK/node.log" 2>&1 &
NODE=$!
for _ in $(seq 100); do
  "$COHORT" status --coordinator "127.0.0.1:$P" --token-file "$WORK/token" > /dev/null 2>&1 && break
  sleep 0.1
done

launch() {  # launch NAME
  timeout 300 "$COHORT" launch --coordinator "127.0.0.1:$P" --token-file "$WORK/token" --nproc 2 --min 2 --max 4 \
    --join-grace-ms 500 -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/$1.out" 2> "$WORK/$1.err"
}
launch a & la=$!
wait_for_step "$WORK/a.out" 200 || fail "the first launcher's job made no progress to step 200: $(tail -5 "$WORK/a.err")"
launch b & lb=$!
ra=0; rb=0
wait $la || ra=$?
wait $lb || rb=$?
((ra == 0 && rb == 0)) && pass "both launchers exit 0" \
  || fail "launchers exited $ra / $rb: $(tail -5 "$WORK/a.err") // $(tail -5 "$WORK/b.err")"
final=$WORK/a.out
[[ $(json_field "$WORK/b.out" rank) == 0 ]] && final=$WORK/b.out
hist=$(json_field "$final" epoch_history)
python3 - "$hist" <<'PY' && pass "grew from 2 to 4 ranks, global batch 128 -> 256, lr x2: $hist" || fail "epoch history $hist"
import json, sys
h = json.loads(sys.argv[1])
last = h[-1]
# lr 0.05 at the starting global batch 128 (2 x 64); linear: 0.1 at 256.
assert last["world_size"] == 4 and last["global_batch"] == 256 and abs(last["lr"] - 0.1) < 1e-6, h
for e in h:
    assert abs(e["lr"] - 0.05 * e["global_batch"] / 128) < 1e-6, h
PY
[[ $(json_field "$final" world_size) == 4 ]] && pass "finished on 4 ranks" || fail "world_size $(json_field "$final" world_size)"
[[ $(json_field "$final" end_step) == $STEPS ]] && pass "trained to step $STEPS" || fail "end_step $(json_field "$final" end_step)"
grep -q "epoch_history" "$WORK/a.out" || fail "no summary from the first launcher"
finish
