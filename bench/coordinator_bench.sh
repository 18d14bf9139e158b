#!/usr/bin/env bash
# Coordinator benchmark: a 3-node cluster on 127.0.0.1 with fsync on
# (the WAL syncs every Ready that changes the log or the vote).
#   - commit latency p50/p99 of 128-byte puts from 1 client;
#   - throughput and latency with 16 and with 256 concurrent clients;
#   - leader failover: kill -9 of the leader until a put succeeds, ROUNDS times.
# When `etcd` is installed (scripts/setup --peers), the same workloads run in
# the same run against a 3-member etcd cluster on 127.0.0.1 (fsync on, as
# always in etcd; same 128-byte values, puts to the leader), interleaved with
# Cohort's, through bench/etcd_put_bench.py (Python over etcd's HTTP/JSON
# gateway: Debian packages no etcd benchmark tool), and the table shows both
# and the ratio. ETCD=0 skips it.
# Usage: bench/coordinator_bench.sh [COHORT_BIN]
#   (env: OPS1=2000 OPS16=500 OPS256=40 ROUNDS=3 ETCD=1; OPSn = puts per client)
# Prints a table. Every process is killed and the temp dir removed on exit.
set -uo pipefail
COHORT=${1:-$(dirname "$0")/../build/bin/cohort}
OPS1=${OPS1:-2000}
OPS16=${OPS16:-500}
OPS256=${OPS256:-40}
ETCD=${ETCD:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
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

free_ports() {  # free_ports N (bound, then released: a tiny race with other programs)
  python3 -c '
import socket, sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()' "$1"
}
read -r P1 P2 P3 < <(free_ports 3)
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

# etcd: 3 members, defaults (fsync on every commit; heartbeat 100 ms, election 1000 ms).
ETCD_EPS=""
if [[ "$ETCD" != 0 ]] && command -v etcd >/dev/null; then
  read -r E1 E2 E3 F1 F2 F3 < <(free_ports 6)
  EC=("" "$E1" "$E2" "$E3"); EP=("" "$F1" "$F2" "$F3")
  INITIAL="e1=http://127.0.0.1:$F1,e2=http://127.0.0.1:$F2,e3=http://127.0.0.1:$F3"
  ETOKEN="bench-$RANDOM$RANDOM"
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$WORK/etcd$i" --listen-client-urls "http://127.0.0.1:${EC[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${EC[$i]}" --listen-peer-urls "http://127.0.0.1:${EP[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${EP[$i]}" --initial-cluster "$INITIAL" \
      --initial-cluster-state new --initial-cluster-token "$ETOKEN" --logger zap --log-level warn \
      >>"$WORK/etcd$i.log" 2>&1 &
    PID[e$i]=$!
  done
  ETCD_EPS="http://127.0.0.1:$E1,http://127.0.0.1:$E2,http://127.0.0.1:$E3"
elif [[ "$ETCD" != 0 ]]; then
  echo "coordinator_bench: etcd not installed (scripts/setup --peers); Cohort only" >&2
fi
etcdbench() { python3 "$HERE/etcd_put_bench.py" --endpoints "$ETCD_EPS" --wait-s 10 "$@"; }

# Each workload on Cohort, then on etcd, before the next workload.
declare -A R=() E=()
for w in "1 $OPS1" "16 $OPS16" "256 $OPS256"; do
  read -r c n <<<"$w"
  R[$c]=$(kvbench --clients "$c" --ops "$n" --value-bytes 128) || die "$c-client run failed: ${R[$c]}"
  if [[ -n "$ETCD_EPS" ]]; then
    E[$c]=$(etcdbench --clients "$c" --ops "$n" --value-bytes 128) || die "etcd $c-client run failed: ${E[$c]}"
  fi
done
for i in 1 2 3; do  # etcd is done: the failover rounds measure Cohort alone
  [[ -n "${PID[e$i]:-}" ]] && { kill -9 "${PID[e$i]}" 2>/dev/null; wait "${PID[e$i]}" 2>/dev/null; unset "PID[e$i]"; }
done

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

row() {  # row NAME COHORT_JSON [ETCD_JSON]
  python3 - "$@" <<'PY'
import json, sys
name, c = sys.argv[1], json.loads(sys.argv[2])
line = f"{name:<30} {c['puts_per_s']:9.0f} {c['p50_ms']:8.2f} {c['p99_ms']:8.2f}"
if len(sys.argv) > 3:
    e = json.loads(sys.argv[3])
    line += f" | {e['puts_per_s']:9.0f} {e['p50_ms']:8.2f} {e['p99_ms']:8.2f} | {c['puts_per_s'] / e['puts_per_s']:7.2f}x"
    line += f" {c['p50_ms'] / e['p50_ms']:7.2f}x"
print(line)
PY
}
printf '\n%-30s %9s %8s %8s' "3 nodes, fsync on, 128 B puts" "puts/s" "p50 ms" "p99 ms"
[[ -n "$ETCD_EPS" ]] && printf ' | %9s %8s %8s | %8s %8s' "etcd put/s" "p50 ms" "p99 ms" "put/s" "p50"
printf '\n%-30s %27s' "" "Cohort"
[[ -n "$ETCD_EPS" ]] && printf ' | %27s | %17s' "etcd $(etcd --version 2>/dev/null | awk 'NR==1{print $3}')" "Cohort / etcd"
echo
for c in 1 16 256; do
  name="$c client$([[ $c == 1 ]] || echo s)"
  if [[ -n "$ETCD_EPS" ]]; then row "$name" "${R[$c]}" "${E[$c]}"; else row "$name" "${R[$c]}"; fi
done
printf '%-34s %s ms (each: %s)\n' "failover, kill -9 leader -> put" \
  "$(printf '%s\n' "${FAIL[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "${FAIL[*]}"
echo "(failover includes starting the cohort client process, about 10-30 ms)"
