#!/usr/bin/env bash
# Checkpoints committed through the coordinator.
# 1. A kill -9 of one of 4 workers with in-memory snapshots effectively off
#    (--snapshot-every far past the run): the survivors hold only the epoch
#    start's state, so they resume from the newest checkpoint the coordinator
#    committed.
# 2. A fresh launcher against the same coordinator data dir (a whole-job
#    restart; it re-forms its epochs as its workers join, so the world size
#    varies at first and samples are not counted here), after the newest committed checkpoint's shard was damaged and
#    a newer checkpoint directory that the coordinator never committed was
#    planted on disk: the job resumes from the previous committed one.
# 3. `cohort ckpt inspect|verify --coordinator` tells the committed
#    checkpoints of a job on a standalone coordinator from a planted copy.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 200 128
cat >> "$WORK/c.yaml" <<YAML
checkpoint:
  dir: $WORK/ckpt
  every: 20
  keep: 3
YAML
timeout 300 "$COHORT" launch --nproc 4 --min 2 --data-dir "$WORK/coord" --snapshot-every 100000 -- \
  "$COHORT" train --config "$WORK/c.yaml" > "$WORK/a.out" 2> "$WORK/a.err" &
launcher=$!
wait_for_step "$WORK/a.out" 65 || fail "no progress to step 65"
mapfile -t pids < <(worker_pids $launcher)
((${#pids[@]} == 4)) || fail "expected 4 workers, found ${#pids[@]}"
kill -9 "${pids[2]}"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0 after kill -9 of one worker" || fail "launch exited $rc: $(tail -8 "$WORK/a.err")"
from=$(sed -n 's/.*restoring the coordinator-committed checkpoint at step \([0-9]*\).*/\1/p' "$WORK/a.out" | head -1)
[[ -n "$from" ]] && ((from >= 40 && from % 20 == 0)) \
  && pass "survivors resumed from the coordinator-committed checkpoint at step $from" \
  || fail "no restore from a committed checkpoint: $(grep 'cohort train' "$WORK/a.out")"
hist=$(json_field "$WORK/a.out" epoch_history)
python3 -c "import json,sys; h=json.loads(sys.argv[1]); sys.exit(0 if any(e['restored_from']=='checkpoint step $from' and e['start_step']==$from for e in h) else 1)" "$hist" \
  && pass "epoch_history says so" || fail "epoch_history $hist"
"$COHORT" ckpt verify "$WORK/ckpt" > "$WORK/verify.out" 2>&1 && pass "every checkpoint on disk verifies" \
  || fail "ckpt verify: $(cat "$WORK/verify.out")"
[[ -d "$WORK/ckpt/step-000000200" && -d "$WORK/ckpt/step-000000180" ]] || fail "missing checkpoints: $(ls "$WORK/ckpt")"

# Damage the newest committed checkpoint (step 200) and plant an uncommitted
# "step 230": a copy of step 180 whose MANIFEST.json says 230. The mpirun
# path would resume from 230; the coordinator never committed it.
python3 - "$WORK/ckpt/step-000000200/rank-00001.safetensors" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-5] ^= 0x10
open(p, "wb").write(bytes(b))
PY
cp -r "$WORK/ckpt/step-000000180" "$WORK/ckpt/step-000000230"
python3 - "$WORK/ckpt/step-000000230/MANIFEST.json" <<'PY'
import json, sys
p = sys.argv[1]
m = json.load(open(p))
m["step"] = 230
open(p, "w").write(json.dumps(m))
PY
rc=0
timeout 300 "$COHORT" launch --nproc 4 --min 2 --data-dir "$WORK/coord" -- \
  "$COHORT" train --config "$WORK/c.yaml" --steps 240 > "$WORK/b.out" 2> "$WORK/b.err" || rc=$?
((rc == 0)) && pass "restarted job exits 0" || fail "restarted job exited $rc: $(tail -8 "$WORK/b.err")"
grep -q "restoring the coordinator-committed checkpoint at step 180" "$WORK/b.out" \
  && pass "resumed from step 180, the previous committed checkpoint" \
  || fail "not resumed from 180: $(grep 'cohort train' "$WORK/b.out")"
grep -q "step-000000200.*damaged" "$WORK/b.err" && pass "the damaged step 200 was named" \
  || fail "no warning about step 200: $(tail -5 "$WORK/b.err")"
grep -q "at step 230" "$WORK/b.out" && fail "the uncommitted step 230 was restored" \
  || pass "the uncommitted step-000000230 was ignored"
from=$(sed -n 's/.*restoring the coordinator-committed checkpoint at step \([0-9]*\).*/\1/p' "$WORK/b.out" | head -1)
[[ $from == 180 ]] && pass "the restarted job's first restore was step 180" || fail "first restore: '$from'"
[[ $(json_field "$WORK/b.out" end_step) == 240 ]] && pass "trained to step 240" || fail "end_step $(json_field "$WORK/b.out" end_step)"

# 3. A standalone coordinator on a free port (bound, then released: a tiny
#    race with other programs), a short job through it, a planted copy.
port=$(free_ports 1)
echo "token-for-the-ckpt-test" > "$WORK/token"
"$COHORT" coordinator --id 1 --peers "1=127.0.0.1:$port" --data-dir "$WORK/standalone" --token-file "$WORK/token" \
  > "$WORK/coord.log" 2>&1 &
coord=$!
trap 'kill "$coord" 2> /dev/null || true; rm -rf "$WORK"' EXIT
small_config "$WORK/s.yaml" 40 64
printf 'checkpoint: {dir: %s, every: 10, keep: 3}\n' "$WORK/ck3" >> "$WORK/s.yaml"
rc=0
timeout 120 "$COHORT" launch --nproc 2 --coordinator "127.0.0.1:$port" --token-file "$WORK/token" -- \
  "$COHORT" train --config "$WORK/s.yaml" > "$WORK/c.out" 2> "$WORK/c.err" || rc=$?
((rc == 0)) && pass "a job through a standalone coordinator exits 0" || fail "exited $rc: $(tail -5 "$WORK/c.err")"
cp -r "$WORK/ck3/step-000000030" "$WORK/ck3/step-000000035"
"$COHORT" ckpt inspect "$WORK/ck3" --json --coordinator "127.0.0.1:$port" --token-file "$WORK/token" > "$WORK/inspect.json" \
  || fail "ckpt inspect --coordinator failed"
python3 -c "
import json, sys
v = {c['step']: c['coordinator'] for c in json.load(open(sys.argv[1]))}
sys.exit(0 if v == {20: 'committed', 30: 'committed', 35: 'no', 40: 'committed'} else 1)" "$WORK/inspect.json" \
  && pass "ckpt inspect --coordinator: 20, 30, 40 committed, the planted 35 not" || fail "inspect: $(cat "$WORK/inspect.json")"
"$COHORT" ckpt verify "$WORK/ck3" --coordinator "127.0.0.1:$port" --token-file "$WORK/token" > "$WORK/verify3.out" 2>&1 || true
grep -q "step-000000035 (coordinator: no)" "$WORK/verify3.out" && pass "ckpt verify marks it too" \
  || fail "verify: $(cat "$WORK/verify3.out")"
kill "$coord"
wait "$coord" 2>/dev/null || true
finish
