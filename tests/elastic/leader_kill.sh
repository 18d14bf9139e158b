#!/usr/bin/env bash
# Chaos: one job from two launchers (2 workers each) on a 3-node
# `cohort coordinator` cluster; kill -9 of the coordinator's leader while they
# train. The job controller moves to the new leader; both launchers exit 0;
# the final loss is within TOL x the initial loss of a fault-free run with the
# same global batch; no step is applied twice (steps_run - steps_redone =
# steps). On the way: a launcher with a wrong token is refused with a clear
# error, a launcher with other job parameters too, and the job goes on.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
TOL=${ELASTIC_LOSS_TOL:-0.05}
STEPS=1200
declare -A PID=()
cleanup() {
  for i in "${!PID[@]}"; do kill -9 "${PID[$i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Reference: one launcher, 4 workers, the same global batch (4 x 64).
small_config "$WORK/ref.yaml" $STEPS 256
small_config "$WORK/c.yaml" $STEPS 128  # per launcher of 2: 64 a rank
timeout 300 "$COHORT" launch --nproc 4 -- "$COHORT" train --config "$WORK/ref.yaml" > "$WORK/ref.out" 2> "$WORK/ref.err" \
  || fail "fault-free run failed: $(tail -5 "$WORK/ref.err")"

read -r P1 P2 P3 < <(free_ports 3)
PEERS="1=127.0.0.1:$P1,2=127.0.0.1:$P2,3=127.0.0.1:$P3"
EPS="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
echo "s3cret-$RANDOM-$RANDOM" > "$WORK/token"
echo "not-the-token" > "$WORK/bad-token"
for i in 1 2 3; do
  "$COHORT" coordinator --id $i --peers "$PEERS" --data-dir "$WORK/data$i" --token-file "$WORK/token" --log-level warn \
    >> "$WORK/node$i.log" 2>&1 &
  PID[$i]=$!
done
leader_id() { "$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json 2>/dev/null \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['leader'])"; }
for _ in $(seq 100); do l=$(leader_id || echo 0); [[ -n "$l" && "$l" != 0 ]] && break; sleep 0.1; done

launch() {  # launch NAME EXTRA_FLAGS...
  local name=$1; shift
  timeout 300 "$COHORT" launch --coordinator "$EPS" --token-file "$WORK/token" --nproc 2 --min 2 --max 4 "$@" \
    -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/$name.out" 2> "$WORK/$name.err"
}
launch a & la=$!
launch b & lb=$!

# A wrong token: refused at once, clearly.
rc=0
timeout 60 "$COHORT" launch --coordinator "$EPS" --token-file "$WORK/bad-token" --nproc 2 --min 2 --max 4 \
  -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/bad.out" 2> "$WORK/bad.err" || rc=$?
((rc != 0 && rc != 124)) && grep -qi "token" "$WORK/bad.err" \
  && pass "wrong token refused (exit $rc): $(grep -m1 error "$WORK/bad.err")" || fail "wrong token: exit $rc, $(cat "$WORK/bad.err")"
# A worker alone with a wrong token: refused too.
rc=0
COHORT_COORDINATOR=$EPS COHORT_TOKEN_FILE=$WORK/bad-token COHORT_WORKER_ID=intruder \
  timeout 60 "$COHORT" train --config "$WORK/c.yaml" > /dev/null 2> "$WORK/intruder.err" || rc=$?
((rc != 0 && rc != 124)) && grep -qi "token" "$WORK/intruder.err" \
  && pass "worker with a wrong token refused (exit $rc): $(grep -m1 error "$WORK/intruder.err")" \
  || fail "worker with a wrong token: exit $rc, $(cat "$WORK/intruder.err")"
# Other job parameters than the first launcher's: refused.
rc=0
timeout 60 "$COHORT" launch --coordinator "$EPS" --token-file "$WORK/token" --nproc 1 --min 1 --max 4 \
  -- "$COHORT" train --config "$WORK/c.yaml" > /dev/null 2> "$WORK/other.err" || rc=$?
((rc != 0 && rc != 124)) && grep -q "other parameters" "$WORK/other.err" \
  && pass "other parameters refused: $(grep -m1 error "$WORK/other.err")" || fail "other parameters: exit $rc, $(cat "$WORK/other.err")"

# Kill the leader once training is under way.
for ((i = 0; i < 1200; ++i)); do
  awk '$1 == "step" { split($2, a, "/"); if (a[1] + 0 >= 200) f = 1 } END { exit !f }' "$WORK/a.out" "$WORK/b.out" && break
  sleep 0.1
done
# `cohort status`: a workers table with breaker and last step, and the same in JSON.
sleep 1.5  # a step report (every 10 heartbeats) after step 200
"$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" > "$WORK/status.txt" || fail "cohort status failed"
"$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json > "$WORK/status.json" || fail "cohort status --json failed"
grep -q "BREAKER.*HEARTBEAT AGO.*LAST STEP" "$WORK/status.txt" && (($(grep -c " active .* closed " "$WORK/status.txt") == 4)) \
  && pass "status table: 4 active workers, breakers closed" || fail "status table: $(cat "$WORK/status.txt")"
python3 - "$WORK/status.json" <<'PY' && pass "status --json: breaker, heartbeat age and last step of each worker" || fail "status json: $(cat "$WORK/status.json")"
import json, sys
m = [x for x in json.load(open(sys.argv[1]))["members"] if x["state"] == "active"]
assert len(m) == 4, m
assert all(x["breaker"] == "closed" and x["last_step"] >= 100 and 0 <= x["heartbeat_age_ms"] < 5000 for x in m), m
PY
L=$(leader_id)
[[ -n "$L" && "$L" != 0 ]] || fail "no leader before the kill"
kill -9 "${PID[$L]}"
unset "PID[$L]"
echo "killed leader node $L at $(grep -h '^step' "$WORK/a.out" "$WORK/b.out" | tail -n 1)"
ra=0; rb=0
wait $la || ra=$?
wait $lb || rb=$?
((ra == 0 && rb == 0)) && pass "both launchers exit 0 after kill -9 of the coordinator leader" \
  || fail "launchers exited $ra / $rb: $(tail -5 "$WORK/a.err") // $(tail -5 "$WORK/b.err")"
L2=$(leader_id)
pass "new leader: node $L2"
# The summary of the final rank 0 (the launcher whose summary has rank 0).
final=$WORK/a.out
[[ $(json_field "$WORK/b.out" rank) == 0 && $(json_field "$WORK/b.out" epoch) -ge $(json_field "$WORK/a.out" epoch) ]] && final=$WORK/b.out
[[ $(json_field "$final" world_size) == 4 ]] && pass "finished on 4 ranks" || fail "world_size $(json_field "$final" world_size)"
run=$(json_field "$final" steps_run); redone=$(json_field "$final" steps_redone)
((run - redone == STEPS)) && pass "no step applied twice: steps_run $run - steps_redone $redone = $STEPS" \
  || fail "steps_run $run - steps_redone $redone != $STEPS"
seen=$(json_field "$final" samples_seen)
((seen == (STEPS + redone) * 256)) && pass "samples_seen $seen = (steps + redone) x 256" || fail "samples_seen $seen"
ref=$(json_field "$WORK/ref.out" final_loss); el=$(json_field "$final" final_loss); init=$(json_field "$WORK/ref.out" initial_loss)
python3 -c "import sys; sys.exit(0 if abs($el - $ref) <= $TOL * $init else 1)" \
  && pass "final loss $el within $TOL x initial loss $init of the fault-free $ref" \
  || fail "final loss $el vs fault-free $ref (initial $init)"
echo "epochs $(json_field "$final" epochs)"
finish
