#!/usr/bin/env bash
# Chaos with a real network partition: a one-node coordinator in a hub
# network namespace, and two "hosts" (namespaces n1, n2, each with a veth
# into the hub's bridge) running one `cohort launch --nproc 2` each. Cutting
# n2's link: the controller's probes of n2's workers fail, they are evicted,
# and n1's workers go on in an epoch of 2. Healing it: n2's workers find
# themselves out of the epoch, join again, and are taken back (an epoch of 4).
# Both launchers exit 0. Needs root (ip netns, veth, bridge); else exit 77.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
COHORT=$(readlink -f "$COHORT")
[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root for network namespaces"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: no 'ip' command (iproute2)"; exit 77; }
TAG=cep$$
HUB=$TAG-hub
declare -A NS=([1]=$TAG-n1 [2]=$TAG-n2)
declare -A IP=([1]=10.78.0.1 [2]=10.78.0.2)
CIP=10.78.0.254
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in "${NS[@]}" "$HUB"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$HUB" 2>"$WORK/netns.err" || { echo "SKIP: cannot create a network namespace: $(cat "$WORK/netns.err")"; exit 77; }
ip -n "$HUB" link set lo up
ip -n "$HUB" link add br0 type bridge 2>"$WORK/br.err" || { echo "SKIP: cannot create a bridge: $(cat "$WORK/br.err")"; exit 77; }
ip -n "$HUB" addr add $CIP/24 dev br0
ip -n "$HUB" link set br0 up
for i in 1 2; do
  ip netns add "${NS[$i]}"
  ip -n "${NS[$i]}" link set lo up
  ip -n "$HUB" link add "h$i" type veth peer name eth0 netns "${NS[$i]}" 2>"$WORK/veth.err" \
    || { echo "SKIP: cannot create a veth pair: $(cat "$WORK/veth.err")"; exit 77; }
  ip -n "$HUB" link set "h$i" master br0 up
  ip -n "${NS[$i]}" addr add "${IP[$i]}/24" dev eth0
  ip -n "${NS[$i]}" link set eth0 up
done
pass "namespaces $HUB, ${NS[1]}, ${NS[2]} bridged"

echo "s3cret-$RANDOM-$RANDOM" > "$WORK/token"
EP=$CIP:7001
ip netns exec "$HUB" "$COHORT" coordinator --id 1 --peers "1=$EP" --data-dir "$WORK/data" --token-file "$WORK/token" \
  --log-level warn > "$WORK/node.log" 2>&1 &
node=$!
pids+=($node)
# The launchers give the coordinator 10 s; under load its start can take a
# while, so wait until it listens (and say why if it died).
for ((i = 0; i < 300; ++i)); do
  ip netns exec "$HUB" bash -c "exec 3<>/dev/tcp/$CIP/7001" 2> /dev/null && break
  kill -0 "$node" 2> /dev/null || break
  sleep 0.1
done
if ! ip netns exec "$HUB" bash -c "exec 3<>/dev/tcp/$CIP/7001" 2> /dev/null; then
  fail "the coordinator does not listen on $EP after 30 s: $(tail -5 "$WORK/node.log")"
  finish
fi
STEPS=1500
small_config "$WORK/c.yaml" $STEPS 128
launch() {  # launch I: launcher I in namespace I, its workers advertising its address
  ip netns exec "${NS[$1]}" env COHORT_ADVERTISE_HOST="${IP[$1]}" timeout 300 "$COHORT" launch --coordinator "$EP" \
    --token-file "$WORK/token" --nproc 2 --min 2 --max 4 -- "$COHORT" train --config "$WORK/c.yaml" \
    > "$WORK/l$1.out" 2> "$WORK/l$1.err"
}
launch 1 & l1=$!
launch 2 & l2=$!
pids+=($l1 $l2)
for ((i = 0; i < 1200; ++i)); do
  awk '$1 == "step" { split($2, a, "/"); if (a[1] + 0 >= 150) f = 1 } END { exit !f }' "$WORK/l1.out" "$WORK/l2.out" && break
  sleep 0.1
done
grep -q "epoch 1: 4 workers" "$WORK/l1.err" && pass "epoch 1: 4 workers on two hosts" || fail "no 4-worker first epoch: $(cat "$WORK/l1.err")"
cut_at=$(date +%s%3N)
ip -n "$HUB" link set h2 down
for ((i = 0; i < 300; ++i)); do grep -q "epoch [0-9]*: 2 workers" "$WORK/l1.err" && break; sleep 0.1; done
grep -q "epoch [0-9]*: 2 workers" "$WORK/l1.err" \
  && pass "cut: n2's workers evicted, the job goes on with 2 ($(( $(date +%s%3N) - cut_at )) ms): $(grep -m1 'epoch [0-9]*: 2 workers' "$WORK/l1.err")" \
  || fail "no 2-worker epoch after the cut: $(cat "$WORK/l1.err")"
# The survivors leave the cut peers' collective at --collective-timeout-ms (5 s).
n=$(cat "$WORK/l1.out" "$WORK/l2.out" | grep -c '^step')
for ((i = 0; i < 150; ++i)); do (($(cat "$WORK/l1.out" "$WORK/l2.out" | grep -c '^step') > n + 2)) && break; sleep 0.1; done
m=$(cat "$WORK/l1.out" "$WORK/l2.out" | grep -c '^step')
((m > n + 2)) && pass "training goes on during the cut ($n -> $m progress lines)" || fail "no progress during the cut"
ip -n "$HUB" link set h2 up
healed_at=$(date +%s%3N)
for ((i = 0; i < 600; ++i)); do
  (($(grep -c "epoch [0-9]*: 4 workers" "$WORK/l1.err") >= 2)) && break; sleep 0.1
done
(($(grep -c "epoch [0-9]*: 4 workers" "$WORK/l1.err") >= 2)) \
  && pass "healed: n2's workers taken back ($(( $(date +%s%3N) - healed_at )) ms): $(grep 'epoch [0-9]*: 4 workers' "$WORK/l1.err" | tail -n 1)" \
  || fail "not taken back after the heal: $(tail -5 "$WORK/l1.err")"
r1=0; r2=0
wait $l1 || r1=$?
wait $l2 || r2=$?
((r1 == 0 && r2 == 0)) && pass "both launchers exit 0" || fail "launchers exited $r1 / $r2: $(tail -4 "$WORK/l1.err") // $(tail -4 "$WORK/l2.err")"
final=$WORK/l1.out
[[ $(json_field "$WORK/l2.out" rank) == 0 && $(json_field "$WORK/l2.out" epoch) -ge $(json_field "$WORK/l1.out" epoch) ]] && final=$WORK/l2.out
[[ $(json_field "$final" world_size) == 4 ]] && pass "finished on 4 ranks" || fail "world_size $(json_field "$final" world_size)"
run=$(json_field "$final" steps_run); redone=$(json_field "$final" steps_redone)
((run - redone == STEPS)) && pass "no step applied twice: steps_run $run - steps_redone $redone = $STEPS" \
  || fail "steps_run $run - steps_redone $redone != $STEPS"
finish
