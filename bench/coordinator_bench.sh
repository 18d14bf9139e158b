#!/usr/bin/env bash
# Coordinator benchmark (issue 6): a 3-node cluster on 127.0.0.1 with fsync on
# (the WAL syncs every Ready that changes the log or the vote).
#   - commit latency p50/p99 of 128-byte puts from 1 client;
#   - throughput and latency with 16 concurrent clients;
#   - leader failover: kill -9 of the leader until a put succeeds, ROUNDS times.
# Usage: bench/coordinator_bench.sh [COHORT_BIN] (env: OPS1=2000 OPS16=500 ROUNDS=3)
# Prints a table. Every process is killed and the temp dir removed on exit.
set -uo pipefail
COHORT=${1:-$(dirname "$0")/../build/bin/cohort}
OPS1=${OPS1:-2000}
OPS16=${OPS16:-500}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/cohort-bench.XXXXXX)
declare -A PID=()
cleanup() {
  for i in "${!PID[@]}"; do kill -9 "${PID[$i]}" 2>/dev/null || true; done
  for i in "${!PID[@]}"; do wait "${PID[$i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "coordinator_bench: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

read -r P1 P2 P3 < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
declare -A ADDR=([1]=127.0.0.1:$P1 [2]=127.0.0.1:$P2 [3]=127.0.0.1:$P3)
PEERS="1=${ADDR[1]},2=${ADDR[2]},3=${ADDR[3]}"
EPS="${ADDR[1]},${ADDR[2]},${ADDR[3]}"
echo "bench-$RANDOM$RANDOM" > "$WORK/token"
start() {
  "$COHORT" coordinator --id "$1" --peers "$PEERS" --data-dir "$WORK/data$1" --token-file "$WORK/token" \
    --log-level warn >>"$WORK/node$1.log" 2>&1 &
  PID[$1]=$!
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
leader() { "$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json 2>/dev/null | json '["leader"]'; }
wait_leader() {
  for _ in $(seq 100); do l=$(leader || echo 0); [[ -n "$l" && "$l" != 0 ]] && { echo "$l"; return 0; }; sleep 0.1; done
  return 1
}
kvbench() { "$COHORT" kv --coordinator "$EPS" --token-file "$WORK/token" --timeout-ms 10000 bench "$@"; }

for i in 1 2 3; do start $i; done
wait_leader >/dev/null || die "no leader within 10 s"

R1=$(kvbench --clients 1 --ops "$OPS1" --value-bytes 128) || die "1-client run failed: $R1"
R16=$(kvbench --clients 16 --ops "$OPS16" --value-bytes 128) || die "16-client run failed: $R16"

FAIL=()
for r in $(seq "$ROUNDS"); do
  L=$(wait_leader) || die "no leader before failover round $r"
  kill -9 "${PID[$L]}"; wait "${PID[$L]}" 2>/dev/null; unset "PID[$L]"
  t0=$(now_ms)
  "$COHORT" kv --coordinator "$EPS" --token-file "$WORK/token" --timeout-ms 10000 put failover "$r" >/dev/null ||
    die "no put within 10 s after killing leader $L"
  FAIL+=($(( $(now_ms) - t0 )))
  start "$L"
  sleep 1.5  # let it rejoin before the next round
done

printf '\n%-34s %12s %10s %10s\n' "workload (3 nodes, fsync on)" "puts/s" "p50 ms" "p99 ms"
for pair in "1 client, 128 B puts:$R1" "16 clients, 128 B puts:$R16"; do
  name=${pair%%:*}; r=${pair#*:}
  printf '%-34s %12.0f %10.2f %10.2f\n' "$name" "$(echo "$r" | json '["puts_per_s"]')" \
    "$(echo "$r" | json '["p50_ms"]')" "$(echo "$r" | json '["p99_ms"]')"
done
printf '%-34s %s ms (each: %s)\n' "failover, kill -9 leader -> put" \
  "$(printf '%s\n' "${FAIL[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "${FAIL[*]}"
echo "(failover includes starting the cohort client process, about 10-30 ms)"
