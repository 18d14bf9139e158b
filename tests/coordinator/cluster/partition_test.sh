#!/usr/bin/env bash
# A network partition of a real 3-node coordinator cluster.
#
# Each node runs in its own network namespace with one veth into a bridge in
# a fourth ("hub") namespace, which is also where the clients run:
#
#     n1 10.77.0.1 --+
#     n2 10.77.0.2 --+-- br0 10.77.0.254 (hub: cohort kv / cohort status)
#     n3 10.77.0.3 --+
#
# Everything lives inside these namespaces, so the test touches no interface
# or address of the machine and two copies can run at once.
#   1. writes through `cohort kv`;
#   2. the leader's link goes down: the majority elects a new leader and
#      accepts writes; the old leader steps down (CheckQuorum, dissertation
#      9.6), as `cohort status` run inside its namespace shows, and a write
#      sent to it alone is not acknowledged;
#   3. the link comes back: every node applies up to the commit index, the
#      logs end at the same index, no acknowledged write is lost and the write
#      the isolated leader refused is nowhere;
#   4. the new leader is cut off in turn, so the old leader and the third node
#      must form the quorum: they elect a leader and serve every value.
# Needs root (ip netns, veth, bridge); otherwise exits 77 (ctest: skipped).
# Usage: partition_test.sh COHORT_BIN
# Processes, namespaces (and with them the veths and the bridge) and the temp
# dir are removed on exit, even on failure.
set -uo pipefail
COHORT=${1:?usage: partition_test.sh COHORT_BIN}
COHORT=$(readlink -f "$COHORT")
SKIP=77

skip() { echo "SKIP: $*"; exit "$SKIP"; }
[[ $(id -u) -eq 0 ]] || skip "needs root to create network namespaces and veth pairs (ip netns); run as root"
command -v ip >/dev/null || skip "no 'ip' command (install iproute2: scripts/setup)"
command -v python3 >/dev/null || skip "no python3 (scripts/setup)"

TAG=cpt$$  # namespace names unique to this run
HUB=$TAG-hub
declare -A NS=([1]=$TAG-n1 [2]=$TAG-n2 [3]=$TAG-n3)
declare -A IP=([1]=10.77.0.1 [2]=10.77.0.2 [3]=10.77.0.3)
PORT=7001  # every node has its own namespace, hence its own port space
WORK=$(mktemp -d /tmp/cohort-partition.XXXXXX)
declare -A PID=()
cleanup() {
  for i in "${!PID[@]}"; do kill -9 "${PID[$i]}" 2>/dev/null || true; done
  for i in "${!PID[@]}"; do wait "${PID[$i]}" 2>/dev/null || true; done
  for n in "${NS[@]}" "$HUB"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- The network ---------------------------------------------------------------
ip netns add "$HUB" 2>"$WORK/netns.err" ||
  skip "cannot create a network namespace ($(head -c 200 "$WORK/netns.err")); needs CAP_SYS_ADMIN and a kernel with netns"
ip -n "$HUB" link set lo up
ip -n "$HUB" link add br0 type bridge 2>"$WORK/br.err" || skip "cannot create a bridge: $(head -c 200 "$WORK/br.err")"
ip -n "$HUB" addr add 10.77.0.254/24 dev br0
ip -n "$HUB" link set br0 up
for i in 1 2 3; do
  ip netns add "${NS[$i]}" || skip "cannot create namespace ${NS[$i]}"
  ip -n "${NS[$i]}" link set lo up
  ip -n "$HUB" link add "h$i" type veth peer name eth0 netns "${NS[$i]}" 2>"$WORK/veth.err" ||
    skip "cannot create a veth pair: $(head -c 200 "$WORK/veth.err")"
  ip -n "$HUB" link set "h$i" master br0 up
  ip -n "${NS[$i]}" addr add "${IP[$i]}/24" dev eth0
  ip -n "${NS[$i]}" link set eth0 up
done

source "$(dirname "$0")/check_lib.sh"

pass "3 namespaces bridged in $HUB"

PEERS="1=${IP[1]}:$PORT,2=${IP[2]}:$PORT,3=${IP[3]}:$PORT"
EPS="${IP[1]}:$PORT,${IP[2]}:$PORT,${IP[3]}:$PORT"
echo "s3cret-$RANDOM-$RANDOM" > "$WORK/token"

start() {  # start ID: the node inside its own namespace
  ip netns exec "${NS[$1]}" "$COHORT" coordinator --id "$1" --peers "$PEERS" --data-dir "$WORK/data$1" \
    --token-file "$WORK/token" >>"$WORK/node$1.log" 2>&1 &
  PID[$1]=$!
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# kv through every endpoint; kv_on ENDPOINTS through those alone (the reachable
# ones during a partition: a fresh client that tries the cut-off node first
# loses an attempt timeout, 1 s, on each command).
kv_on() { local eps=$1; shift; in_ns "$HUB" "$COHORT" kv --coordinator "$eps" --token-file "$WORK/token" --timeout-ms 10000 "$@"; }
kv() { kv_on "$EPS" "$@"; }
eps_without() { local out=() i; for i in 1 2 3; do [[ $i == "$1" ]] || out+=("${IP[$i]}:$PORT"); done; (IFS=,; echo "${out[*]}"); }
status_json() {  # status_json NAMESPACE ENDPOINTS
  in_ns "$1" "$COHORT" status --coordinator "$2" --token-file "$WORK/token" --json 2>/dev/null
}
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
# The view node ID has of itself, as "role leader applied commit last" (empty when it does not answer).
node_view() {  # node_view NAMESPACE ID
  status_json "$1" "${IP[$2]}:$PORT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for n in d["nodes"]:
    if n.get("reachable") and n.get("id") == int(sys.argv[1]):
        print(n["role"], n["leader"], n["applied_index"], n["commit_index"], n["last_index"])' "$2" 2>/dev/null
}
leader_id() { status_json "$HUB" "${1:-$EPS}" | json_field '["leader"]' 2>/dev/null; }
wait_leader() {  # wait_leader [NOT_ID]: prints the leader id once one other than NOT_ID is known (10 s at most)
  local end_ms=$(($(now_ms) + 10000)) eps=$EPS
  [[ -n "${1:-}" ]] && eps=$(eps_without "$1")
  while (($(now_ms) < end_ms)); do
    l=$(leader_id "$eps" || echo 0)
    if [[ -n "$l" && "$l" != 0 && "$l" != "${1:-0}" ]]; then echo "$l"; return 0; fi
    sleep 0.1
  done
  return 1
}
cut() { ip -n "$HUB" link set "h$1" down; }   # the node's side loses its carrier: nothing in or out
heal() { ip -n "$HUB" link set "h$1" up; }

for i in 1 2 3; do start "$i"; done
LEADER=$(wait_leader) || die "no leader elected within 10 s (do the namespaces reach each other over br0 in $HUB?)"
pass "3 nodes up in 3 namespaces, leader is node $LEADER"

declare -A WANT=()  # every acknowledged write: key -> value
for i in $(seq 1 20); do
  kv put "key$i" "before-$i" >/dev/null || die "put key$i failed"
  WANT[key$i]="before-$i"
done
pass "20 writes acknowledged before the partition"

# ---- Partition: the leader alone on one side ------------------------------------
OLD=$LEADER
cut "$OLD"
t0=$(now_ms)
kv put after-cut yes >/dev/null || die "the majority accepted no write within 10 s of cutting off leader $OLD"
echo "partition: leader $OLD cut off -> next write acknowledged by the majority: $(($(now_ms) - t0)) ms"
WANT[after-cut]=yes
NEW=$(wait_leader "$OLD") || die "the majority elected no leader other than $OLD"
pass "majority elected node $NEW"
MAJ=$(eps_without "$OLD")
for i in $(seq 1 10); do
  if kv_on "$MAJ" put "key$i" "during-$i" >/dev/null; then WANT[key$i]="during-$i"; else fail "put key$i on the majority side failed"; fi
done
pass "majority accepted 10 overwrites during the partition"

# The old leader steps down on its own (CheckQuorum: no quorum heard within an
# election timeout) and knows no leader; asked from inside its namespace.
down=0
end_ms=$(($(now_ms) + 10000))
while (($(now_ms) < end_ms)); do  # 10 s at most (each status waits ~1 s for the unreachable peers)
  read -r role lead _ < <(node_view "${NS[$OLD]}" "$OLD"; echo)
  if [[ -n "${role:-}" && "$role" != leader && "${lead:-x}" == 0 ]]; then down=1; break; fi
  sleep 0.1
done
((down)) && pass "isolated node $OLD stepped down: role $role, knows no leader" ||
  fail "isolated node $OLD still says role '${role:-?}' leader '${lead:-?}' after 10 s"
# A write sent to it alone is not acknowledged (its client retries until the deadline).
if in_ns "${NS[$OLD]}" "$COHORT" kv --coordinator "${IP[$OLD]}:$PORT" --token-file "$WORK/token" --timeout-ms 2000 \
     put isolated-write lost >/dev/null 2>"$WORK/isolated.err"; then
  fail "the isolated old leader acknowledged a write"
else
  pass "isolated node refused the write: $(head -c 200 "$WORK/isolated.err")"
fi

# ---- Heal ---------------------------------------------------------------------------
heal "$OLD"
t_heal=$(now_ms)
converged=0
end_ms=$(($(now_ms) + 30000))
while (($(now_ms) < end_ms)); do  # 30 s at most (5-8 s measured; before the peer keepalive 10-21 s)
  views=()
  for i in 1 2 3; do views+=("$(node_view "$HUB" "$i")"); done
  # Every node answers, one leader, applied == commit == the leader's commit, logs end at the same index.
  if python3 - "${views[@]}" <<'PY'
import sys
v = [s.split() for s in sys.argv[1:]]
if any(len(x) != 5 for x in v): sys.exit(1)
leaders = [x for x in v if x[0] == "leader"]
if len(leaders) != 1: sys.exit(1)
commit = int(leaders[0][3])
ok = all(int(x[2]) == commit and int(x[3]) == commit and int(x[4]) == int(leaders[0][4]) for x in v)
sys.exit(0 if ok else 1)
PY
  then converged=1; break; fi
  sleep 0.1
done
((converged)) && echo "heal -> all 3 nodes at the commit index: $(($(now_ms) - t_heal)) ms"
((converged)) && pass "healed: all 3 nodes applied the commit index, logs end alike (${views[*]})" ||
  fail "no convergence within 30 s after healing; views (role leader applied commit last): ${views[*]}"

check_values() {  # check_values WHEN ENDPOINTS
  local lost=0 got
  for k in "${!WANT[@]}"; do
    got=$(kv_on "$2" get "$k" 2>&1) || true
    [[ "$got" == "${WANT[$k]}" ]] || { lost=$((lost + 1)); echo "  $k: want '${WANT[$k]}' got '$got'" >&2; }
  done
  ((lost == 0)) && pass "$1: all ${#WANT[@]} acknowledged writes hold their last value" ||
    fail "$1: $lost acknowledged writes lost or stale"
  if got=$(kv_on "$2" get isolated-write 2>/dev/null); then fail "$1: the write the isolated leader refused exists ('$got')"
  else pass "$1: the refused write is nowhere"; fi
}
check_values "after healing" "$EPS"

# ---- The rejoined node must now be part of a working quorum -------------------------
CUR=$(wait_leader) || die "no leader after healing"
cut "$CUR"
kv put second-cut yes >/dev/null || die "nodes $OLD and the third accepted no write within 10 s of cutting off $CUR"
WANT[second-cut]=yes
NEXT=$(wait_leader "$CUR") || die "no leader among the other two after cutting off $CUR"
pass "leader $CUR cut off; node $NEXT leads a quorum that includes the rejoined node $OLD"
check_values "with node $CUR cut off" "$(eps_without "$CUR")"
heal "$CUR"

if ((failures > 0)); then
  for f in "$WORK"/node*.log; do echo "--- $f" >&2; tail -8 "$f" >&2; done
  for m in "${FAILED[@]}"; do echo "FAIL: $m" >&2; done
  echo "$failures check(s) failed" >&2; exit 1
fi
echo "all checks passed"
