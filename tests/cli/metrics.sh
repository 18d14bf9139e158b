#!/usr/bin/env bash
# The Prometheus endpoint (--metrics-port) of `cohort coordinator`, `cohort
# train` under mpirun and `cohort launch`'s workers: each process prints
# "metrics on http://HOST:PORT/metrics" on stderr; the exposition parses
# (tests/cli/scrape_metrics.py checks format 0.0.4), the metrics exist and the
# counters grow between two scrapes. Bad flag values and a port in use give a
# clear error and a non-zero exit.
source "$(dirname "$0")/lib.sh" "$@"
SCRAPE="python3 $(dirname "$0")/scrape_metrics.py"
declare -a BG=()
cleanup() {
  for p in "${BG[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${BG[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (30 s at most) until FILE has N lines "metrics on URL"; prints the URLs.
wait_urls() {
  local file=$1 n=$2 i
  for ((i = 0; i < 300; ++i)); do
    if (($(grep -c "metrics on http://" "$file" 2>/dev/null || true) >= n)); then
      grep -o "metrics on http://[^ ]*" "$file" | sed 's/^metrics on //' | sed 's#//0\.0\.0\.0:#//127.0.0.1:#'
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# The value of SERIES in a JSON object of series (stdin); "missing" if absent.
val() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1], 'missing'))" "$1"; }
# Is a > b (floats)?
gt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$1" "$2"; }

# ---- coordinator -----------------------------------------------------------------
PORT=$(free_ports 1)
echo "tok-$RANDOM$RANDOM" > "$WORK/token"
echo "wrong" > "$WORK/bad-token"
"$COHORT" coordinator --id 1 --peers "1=127.0.0.1:$PORT" --data-dir "$WORK/coord" --token-file "$WORK/token" \
  --metrics-port 0 --metrics-address 127.0.0.1 > "$WORK/coord.out" 2> "$WORK/coord.err" &
BG+=($!)
CURL=$(wait_urls "$WORK/coord.err" 1) || { fail "coordinator printed no metrics URL: $(tail -5 "$WORK/coord.err")"; finish; }
pass "coordinator: metrics on $CURL"
MPORT=$(sed 's#.*:\([0-9]*\)/metrics#\1#' <<< "$CURL")
kv() { "$COHORT" kv --coordinator "127.0.0.1:$PORT" --token-file "$WORK/token" --timeout-ms 10000 "$@"; }
for i in $(seq 20); do kv put warmup x > /dev/null 2>&1 && break; sleep 0.2; done
$SCRAPE get "$CURL" > "$WORK/c1.json" || fail "first coordinator scrape failed"
for s in cohort_coordinator_term cohort_coordinator_commit_index cohort_coordinator_applied_index \
  cohort_coordinator_is_leader cohort_coordinator_leader_id cohort_coordinator_epoch \
  'cohort_coordinator_members{state="active"}' 'cohort_coordinator_rpcs_total{method="Coordinator/Put"}' \
  cohort_coordinator_wal_sync_seconds_sum cohort_coordinator_wal_sync_seconds_count \
  'cohort_build_info{version="0.1.0",role="coordinator",node="1"}'; do
  [[ $(val "$s" < "$WORK/c1.json") != missing ]] || fail "coordinator: no $s"
done
[[ $(val cohort_coordinator_is_leader < "$WORK/c1.json") == 1.0 ]] && pass "coordinator: the one node leads" \
  || fail "is_leader $(val cohort_coordinator_is_leader < "$WORK/c1.json")"
[[ $(val cohort_coordinator_leader_id < "$WORK/c1.json") == 1.0 ]] || fail "leader_id $(val cohort_coordinator_leader_id < "$WORK/c1.json")"
for i in $(seq 5); do kv put "k$i" "v$i" > /dev/null || fail "put k$i"; done
"$COHORT" kv --coordinator "127.0.0.1:$PORT" --token-file "$WORK/bad-token" --timeout-ms 2000 get k1 \
  > /dev/null 2>&1 && fail "a wrong token was accepted"
$SCRAPE get "$CURL" > "$WORK/c2.json" || fail "second coordinator scrape failed"
for s in cohort_coordinator_commit_index cohort_coordinator_applied_index \
  'cohort_coordinator_rpcs_total{method="Coordinator/Put"}' cohort_coordinator_wal_sync_seconds_count; do
  a=$(val "$s" < "$WORK/c1.json"); b=$(val "$s" < "$WORK/c2.json")
  gt "$b" "$a" && pass "coordinator: $s grew ($a -> $b)" || fail "coordinator: $s did not grow ($a -> $b)"
done
[[ $(val 'cohort_coordinator_rpc_errors_total{method="Coordinator/Get",code="PERMISSION_DENIED"}' < "$WORK/c2.json") != missing ]] \
  && pass "coordinator: the refused RPC is counted as PERMISSION_DENIED" || fail "no PERMISSION_DENIED error counted"

# HTTP edge cases against a real process.
r=$($SCRAPE raw 127.0.0.1 "$MPORT" 'GET /nope HTTP/1.1\r\n\r\n' | head -1)
[[ $r == "HTTP/1.1 404 Not Found" ]] && pass "other path: $r" || fail "other path gave '$r'"
r=$($SCRAPE raw 127.0.0.1 "$MPORT" 'garbage\r\n\r\n' | tr '\n' ' ')
[[ $r == "HTTP/1.1 400 Bad Request closed " ]] && pass "malformed request: 400, connection closed" || fail "malformed gave '$r'"
r=$($SCRAPE raw 127.0.0.1 "$MPORT" "GET /metrics HTTP/1.1\\r\\nX: $(head -c 20000 /dev/zero | tr '\0' a)\\r\\n\\r\\n" | head -1)
[[ $r == "HTTP/1.1 400 Bad Request" ]] && pass "oversized request: 400" || fail "oversized gave '$r'"

# A second coordinator on the same metrics port: a clear error, exit != 0.
rc=0
timeout 60 "$COHORT" coordinator --id 1 --peers "1=127.0.0.1:0" --data-dir "$WORK/coord2" --token-file "$WORK/token" \
  --metrics-port "$MPORT" --metrics-address 127.0.0.1 > /dev/null 2> "$WORK/inuse.err" || rc=$?
((rc != 0 && rc != 124)) && grep -q "cannot serve metrics on 127.0.0.1:$MPORT.*in use" "$WORK/inuse.err" \
  && pass "coordinator, port in use: exit $rc, $(grep -o 'cannot serve.*' "$WORK/inuse.err" | head -1)" \
  || fail "coordinator on a used port: exit $rc, $(cat "$WORK/inuse.err")"
rc=0
"$COHORT" coordinator --id 1 --peers "1=127.0.0.1:0" --data-dir "$WORK/coord3" --token-file "$WORK/token" \
  --metrics-port 70000 > /dev/null 2> "$WORK/range.err" || rc=$?
((rc == 2)) && grep -q -- "--metrics-port 70000 is outside 0..65535" "$WORK/range.err" \
  && pass "coordinator --metrics-port 70000: exit 2" || fail "coordinator --metrics-port 70000: exit $rc, $(cat "$WORK/range.err")"

# ---- cohort train under mpirun: rank r serves P + local rank (0: any free port) ---
small_config "$WORK/long.yaml" 3000 128
timeout 300 $MPIRUN -np 2 "$COHORT" train --config "$WORK/long.yaml" --metrics-port 0 \
  > "$WORK/train.out" 2> "$WORK/train.err" &
TPID=$!
BG+=($TPID)
if URLS=$(wait_urls "$WORK/train.err" 2); then
  pass "train: 2 ranks print their metrics URL"
  for u in $URLS; do
    $SCRAPE grow "$u" cohort_train_steps_total --timeout 120 > "$WORK/grow.json" || { fail "train: $u: steps did not grow"; continue; }
    python3 - "$WORK/grow.json" "$u" <<'EOF' || fail "train: $u: checks failed"
import json, sys
d = json.load(open(sys.argv[1])); first, last = d["first"], d["last"]
need = ["cohort_train_steps_total", "cohort_train_samples_total", "cohort_train_global_step", "cohort_train_loss",
        "cohort_train_step_seconds_sum", "cohort_train_step_seconds_count", "cohort_train_grad_sync_seconds_sum",
        "cohort_train_grad_sync_seconds_count", "cohort_train_grad_sync_bytes_total",
        "cohort_train_grad_sync_bus_bandwidth_bytes_per_second", "cohort_train_world_size", "cohort_train_rank",
        "cohort_train_epoch", "cohort_train_recoveries_total", "cohort_train_checkpoints_committed_total"]
bad = [n for n in need if n not in last]
assert not bad, f"missing {bad}"
grow = ["cohort_train_steps_total", "cohort_train_samples_total", "cohort_train_step_seconds_count",
        "cohort_train_grad_sync_seconds_count", "cohort_train_grad_sync_bytes_total"]
bad = [n for n in grow if not last[n] > first[n]]
assert not bad, f"did not grow: {bad}"
assert last["cohort_train_world_size"] == 2, last["cohort_train_world_size"]
assert last["cohort_train_samples_total"] == 64 * last["cohort_train_steps_total"], "samples != 64 x steps"
assert last["cohort_train_step_seconds_sum"] > 0 and last["cohort_train_loss"] > 0
assert last["cohort_train_grad_sync_bus_bandwidth_bytes_per_second"] > 0
print(f"ok: train: {sys.argv[2]}: rank {last['cohort_train_rank']:.0f}, steps "
      f"{first['cohort_train_steps_total']:.0f} -> {last['cohort_train_steps_total']:.0f}, loss "
      f"{last['cohort_train_loss']:.3f}, busbw {last['cohort_train_grad_sync_bus_bandwidth_bytes_per_second'] / 1e9:.2f} GB/s")
EOF
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['last']['cohort_train_rank'])" "$WORK/grow.json" \
      >> "$WORK/ranks" || true
  done
  ranks=$(sort "$WORK/ranks" 2>/dev/null | tr '\n' ' ' || true)
  [[ $ranks == "0.0 1.0 " ]] && pass "train: the two endpoints are ranks 0 and 1" || fail "train: ranks seen: '$ranks'"
else
  fail "train printed no metrics URLs: $(tail -5 "$WORK/train.err")"
fi
rc=0
wait "$TPID" || rc=$?
((rc == 0)) && pass "train with --metrics-port exits 0" || fail "train exited $rc: $(tail -5 "$WORK/train.err")"

# Fixed ports: P and P+1 (under mpirun, P + local rank).
small_config "$WORK/short.yaml" 1500 128
FP=$(free_ports 1)
timeout 300 $MPIRUN -np 2 "$COHORT" train --config "$WORK/short.yaml" --metrics-port "$FP" \
  > "$WORK/fixed.out" 2> "$WORK/fixed.err" &
TPID=$!
BG+=($TPID)
if URLS=$(wait_urls "$WORK/fixed.err" 2); then
  got=$(sed 's#.*:\([0-9]*\)/metrics#\1#' <<< "$URLS" | sort -n | tr '\n' ' ')
  [[ $got == "$FP $((FP + 1)) " ]] && pass "train --metrics-port $FP: ranks serve $got" || fail "ports '$got', want $FP and $((FP + 1))"
else
  fail "fixed-port train printed no URLs: $(tail -5 "$WORK/fixed.err")"
fi
wait "$TPID" || fail "fixed-port train failed: $(tail -5 "$WORK/fixed.err")"

# Bad values: out of range (before MPI starts), a port in use (agreed by the ranks).
rc=0
"$COHORT" train --config "$WORK/short.yaml" --metrics-port 70000 > /dev/null 2> "$WORK/tr.err" || rc=$?
((rc == 2)) && grep -q "cohort train: error: --metrics-port 70000 is outside 0..65535" "$WORK/tr.err" \
  && pass "train --metrics-port 70000: exit 2" || fail "train --metrics-port 70000: exit $rc, $(cat "$WORK/tr.err")"
rc=0
timeout 120 $MPIRUN -np 1 "$COHORT" train --config "$WORK/short.yaml" --metrics-port "$MPORT" --metrics-address 127.0.0.1 \
  > /dev/null 2> "$WORK/tu.err" || rc=$?
((rc != 0 && rc != 124)) && grep -q "cohort train: error: .*cannot serve metrics on 127.0.0.1:$MPORT" "$WORK/tu.err" \
  && pass "train on a used port: exit $rc, $(grep -o 'cannot serve.*' "$WORK/tu.err" | head -1)" \
  || fail "train on a used port: exit $rc, $(cat "$WORK/tu.err")"

# ---- cohort launch: worker i serves P + i ----------------------------------------
timeout 300 "$COHORT" launch --nproc 2 --metrics-port 0 -- "$COHORT" train --config "$WORK/short.yaml" \
  > "$WORK/launch.out" 2> "$WORK/launch.err" &
LPID=$!
BG+=($LPID)
if URLS=$(wait_urls "$WORK/launch.err" 2); then
  for u in $URLS; do
    if $SCRAPE grow "$u" cohort_train_steps_total --timeout 120 > "$WORK/lgrow.json"; then
      ep=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['last'].get('cohort_train_epoch'))" "$WORK/lgrow.json")
      gt "$ep" 0 && pass "launch: $u: steps grow, epoch $ep" || fail "launch: $u: epoch $ep"
    else
      fail "launch: $u: steps did not grow"
    fi
  done
else
  fail "launch workers printed no metrics URLs: $(tail -5 "$WORK/launch.err")"
fi
rc=0
wait "$LPID" || rc=$?
((rc == 0)) && pass "launch --metrics-port 0 exits 0" || fail "launch exited $rc: $(tail -5 "$WORK/launch.err")"
# kill -9 of one of 3 workers: the survivors count the recovery and the new epoch.
source "$(dirname "$0")/../elastic/lib_elastic.sh"
small_config "$WORK/rec.yaml" 4000 96
timeout 300 "$COHORT" launch --nproc 3 --min 2 --metrics-port 0 -- "$COHORT" train --config "$WORK/rec.yaml" \
  > "$WORK/rec.out" 2> "$WORK/rec.err" &
LPID=$!
BG+=($LPID)
if URLS=$(wait_urls "$WORK/rec.err" 3); then
  for u in $URLS; do $SCRAPE grow "$u" cohort_train_steps_total --timeout 120 > /dev/null || fail "recovery: $u: no steps"; done
  victim=$(worker_pids "$LPID" | tail -n 1)
  kill -9 "$victim"
  recovered=0
  for u in $URLS; do
    if $SCRAPE until "$u" cohort_train_recoveries_total 1 --timeout 60 > "$WORK/rgrow.json" 2> "$WORK/rgrow.err"; then
      python3 - "$WORK/rgrow.json" "$u" <<'EOF2' && recovered=$((recovered + 1)) || fail "recovery: $u: metrics after the kill"
import json, sys
last = json.load(open(sys.argv[1]))["last"]
assert last["cohort_train_recoveries_total"] == 1, last["cohort_train_recoveries_total"]
assert last["cohort_train_epoch"] >= 2 and last["cohort_train_world_size"] == 2, last
print(f"ok: recovery: {sys.argv[2]}: recoveries_total 1, epoch {last['cohort_train_epoch']:.0f}, world size 2")
EOF2
    elif ! grep -q "Connection refused" "$WORK/rgrow.err"; then  # refused: the killed worker's endpoint
      fail "recovery: $u: $(tail -1 "$WORK/rgrow.err")"
    fi
  done
  ((recovered == 2)) && pass "kill -9 of one of 3 workers: both survivors count 1 recovery" \
    || fail "survivors that counted the recovery: $recovered (want 2)"
else
  fail "recovery: workers printed no metrics URLs: $(tail -5 "$WORK/rec.err")"
fi
rc=0
wait "$LPID" || rc=$?
((rc == 0)) && pass "launch after the kill exits 0" || fail "launch after the kill exited $rc: $(tail -5 "$WORK/rec.err")"

rc=0
"$COHORT" launch --nproc 2 --metrics-port 65535 -- "$COHORT" train --config "$WORK/short.yaml" > /dev/null 2> "$WORK/lr.err" || rc=$?
((rc == 2)) && grep -q "65535 + local rank 1 = 65536 is over 65535" "$WORK/lr.err" \
  && pass "launch --metrics-port 65535 --nproc 2: exit 2" || fail "launch overflow: exit $rc, $(cat "$WORK/lr.err")"
finish
