#!/usr/bin/env bash
# A real 3-process coordinator cluster on 127.0.0.1:
#   writes through `cohort kv`, kill -9 of the leader and the time until a
#   put succeeds again (printed; asserted only under a generous bound), no
#   acknowledged write lost, the old leader restarts and catches up, a node
#   on a corrupted WAL refuses to start naming the file, a wrong token is
#   refused with PERMISSION_DENIED.
# Usage: cluster_test.sh COHORT_BIN
# Every process is killed and the temp dir removed on exit, even on failure.
set -uo pipefail
COHORT=${1:?usage: cluster_test.sh COHORT_BIN}
WORK=$(mktemp -d /tmp/cohort-cluster.XXXXXX)
declare -A PID=()
cleanup() {
  for i in "${!PID[@]}"; do kill -9 "${PID[$i]}" 2>/dev/null || true; done
  for i in "${!PID[@]}"; do wait "${PID[$i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "$0")/check_lib.sh"

# Three free ports (bound, then released: a tiny race with other programs).
read -r P1 P2 P3 < <(free_ports 3)
declare -A ADDR=([1]=127.0.0.1:$P1 [2]=127.0.0.1:$P2 [3]=127.0.0.1:$P3)
PEERS="1=${ADDR[1]},2=${ADDR[2]},3=${ADDR[3]}"
EPS="${ADDR[1]},${ADDR[2]},${ADDR[3]}"
echo "s3cret-$RANDOM-$RANDOM" > "$WORK/token"
echo "not-the-token" > "$WORK/bad-token"

start() {  # start ID
  "$COHORT" coordinator --id "$1" --peers "$PEERS" --data-dir "$WORK/data$1" --token-file "$WORK/token" \
    >>"$WORK/node$1.log" 2>&1 &
  PID[$1]=$!
}
kv() { "$COHORT" kv --coordinator "$EPS" --token-file "$WORK/token" --timeout-ms 10000 "$@"; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
leader_id() { "$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json 2>/dev/null | json_field '["leader"]'; }
wait_leader() {  # prints the leader id once one is known (10 s at most)
  for _ in $(seq 100); do
    l=$(leader_id || echo 0)
    if [[ -n "$l" && "$l" != 0 ]]; then echo "$l"; return 0; fi
    sleep 0.1
  done
  return 1
}

for i in 1 2 3; do start $i; done
LEADER=$(wait_leader) || die "no leader elected within 10 s"
pass "3 nodes up, leader is node $LEADER"

# Writes; every acknowledged one must survive the failover.
for i in $(seq 1 20); do kv put "key$i" "value-$i" >/dev/null || die "put key$i failed"; done
[[ "$(kv get key7)" == "value-7" ]] && pass "get prints the value alone" || fail "get key7 gave '$(kv get key7)'"
kv cas key1 value-1 swapped >/dev/null && pass "cas with the right old value swaps" || fail "cas key1 did not swap"
if kv cas key1 value-1 again 2>"$WORK/cas.err"; then fail "cas with a stale old value swapped"
else grep -q "not swapped" "$WORK/cas.err" && pass "cas with a stale old value refused: $(cat "$WORK/cas.err")" || fail "cas error unclear: $(cat "$WORK/cas.err")"; fi
if kv get no-such-key >/dev/null 2>"$WORK/get.err"; then fail "get of a missing key succeeded"
else pass "get of a missing key: $(cat "$WORK/get.err")"; fi

# watch: prints each new value (bounded by timeout).
timeout 15 "$COHORT" kv --coordinator "$EPS" --token-file "$WORK/token" watch wkey --count 2 >"$WORK/watch.out" 2>&1 &
WATCH=$!
kv put wkey first >/dev/null
for _ in $(seq 50); do [[ -s "$WORK/watch.out" ]] && break; sleep 0.1; done
kv put wkey second >/dev/null
wait "$WATCH"
[[ "$(cat "$WORK/watch.out")" == $'first\nsecond' ]] && pass "watch saw both values" ||
  fail "watch printed: $(cat "$WORK/watch.out")"

# status --json and job show --json carry the job (epoch, members, checkpoint).
KEYS=$("$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json | python3 -c '
import json,sys; d=json.load(sys.stdin)
print(",".join(k for k in ["leader","term","commit_index","nodes","epoch","members","checkpoint"] if k not in d))')
[[ -z "$KEYS" ]] && pass "status --json has the job fields" || fail "status --json lacks: $KEYS"
JOB=$("$COHORT" job --coordinator "$EPS" --token-file "$WORK/token" show --json | json_field '["epoch"]')
[[ "$JOB" == 0 ]] && pass "job show --json: epoch 0 before any commit" || fail "job show --json: epoch '$JOB'"

# Wrong token: refused with PERMISSION_DENIED, by the client API and status.
if "$COHORT" kv --coordinator "$EPS" --token-file "$WORK/bad-token" put intruder x 2>"$WORK/perm.err"; then
  fail "a put with a wrong token succeeded"
elif grep -q PERMISSION_DENIED "$WORK/perm.err"; then pass "wrong token refused: $(head -c 160 "$WORK/perm.err")"
else fail "wrong token: expected PERMISSION_DENIED, got: $(cat "$WORK/perm.err")"; fi
if "$COHORT" status --coordinator "$EPS" --token-file "$WORK/bad-token" >/dev/null 2>"$WORK/perm2.err"; then
  fail "status with a wrong token succeeded"
else grep -q PERMISSION_DENIED "$WORK/perm2.err" && pass "status with a wrong token refused" || fail "status: $(cat "$WORK/perm2.err")"; fi

# kill -9 the leader; time until a put succeeds (the client retries, follows redirects).
OLD=$LEADER
kill -9 "${PID[$OLD]}"; wait "${PID[$OLD]}" 2>/dev/null; unset "PID[$OLD]"
t0=$(now_ms)
kv put after-failover yes >/dev/null || die "no put succeeded within 10 s of killing leader $OLD"
t1=$(now_ms)
FAILOVER_MS=$((t1 - t0))
echo "failover: kill -9 of leader $OLD -> next successful put: ${FAILOVER_MS} ms"
((FAILOVER_MS < 10000)) && pass "recovered within 10 s" || fail "failover took ${FAILOVER_MS} ms"
NEW=$(wait_leader) || die "no leader after the kill"
[[ "$NEW" != "$OLD" ]] && pass "new leader is node $NEW" || fail "leader still $OLD after kill"

lost=0
for i in $(seq 1 20); do
  want="value-$i"; [[ $i == 1 ]] && want=swapped
  got=$(kv get "key$i" 2>&1) || true
  [[ "$got" == "$want" ]] || { lost=$((lost + 1)); echo "  key$i: want '$want' got '$got'" >&2; }
done
((lost == 0)) && pass "no acknowledged write lost (21 keys)" || fail "$lost acknowledged writes lost"

# The old leader restarts and catches up.
start "$OLD"
for i in $(seq 21 30); do kv put "key$i" "value-$i" >/dev/null || fail "put key$i after restart failed"; done
TARGET=$("$COHORT" status --coordinator "$EPS" --token-file "$WORK/token" --json | json_field '["commit_index"]')
caught=0
for _ in $(seq 100); do
  applied=$("$COHORT" status --coordinator "${ADDR[$OLD]}" --token-file "$WORK/token" --json 2>/dev/null |
            json_field '["nodes"][0].get("applied_index", 0)' 2>/dev/null || echo 0)
  if ((applied >= TARGET)); then caught=1; break; fi
  sleep 0.1
done
((caught)) && pass "restarted node $OLD caught up (applied $applied >= commit $TARGET)" ||
  fail "restarted node $OLD applied ${applied:-?} < commit $TARGET after 10 s"

# A node restarted on a corrupted WAL refuses to start, naming the file.
VICTIM=$OLD
kill -9 "${PID[$VICTIM]}"; wait "${PID[$VICTIM]}" 2>/dev/null; unset "PID[$VICTIM]"
SEG=$(ls "$WORK/data$VICTIM"/wal-*.log | head -1)
python3 - "$SEG" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[12] ^= 0xFF  # inside the first record's payload: a CRC mismatch that is not a torn tail
open(p, "wb").write(b)
PY
if timeout 10 "$COHORT" coordinator --id "$VICTIM" --peers "$PEERS" --data-dir "$WORK/data$VICTIM" \
     --token-file "$WORK/token" 2>"$WORK/corrupt.err" >/dev/null; then
  fail "node $VICTIM started on a corrupted WAL"
else
  rc=$?
  if ((rc == 124)); then fail "node $VICTIM kept running on a corrupted WAL"
  elif grep -q "$(basename "$SEG")" "$WORK/corrupt.err" && grep -q DATA_LOSS "$WORK/corrupt.err"; then
    pass "corrupted WAL refused: $(tail -1 "$WORK/corrupt.err" | head -c 240)"
  else fail "corrupted WAL: unclear message: $(cat "$WORK/corrupt.err")"; fi
fi
# The other two still serve.
kv put final ok >/dev/null && [[ "$(kv get final)" == ok ]] && pass "majority still serves" || fail "majority stopped serving"

# TLS: a second cluster with certificates (openssl makes a CA and a cert for
# 127.0.0.1); a TLS client works, a plaintext one gets no answer.
if command -v openssl >/dev/null; then
  T="$WORK/tls"; mkdir -p "$T"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 -subj /CN=cohort-test-ca 2>/dev/null &&
  openssl req -newkey rsa:2048 -nodes -keyout "$T/node.key" -out "$T/node.csr" -subj /CN=cohort-node 2>/dev/null &&
  printf 'subjectAltName=IP:127.0.0.1\n' > "$T/ext" &&
  openssl x509 -req -in "$T/node.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -out "$T/node.pem" \
    -days 1 -extfile "$T/ext" 2>/dev/null || die "openssl could not make test certificates"
  read -r Q1 Q2 Q3 < <(free_ports 3)
  TPEERS="1=127.0.0.1:$Q1,2=127.0.0.1:$Q2,3=127.0.0.1:$Q3"
  TEPS="127.0.0.1:$Q1,127.0.0.1:$Q2,127.0.0.1:$Q3"
  for i in 1 2 3; do
    "$COHORT" coordinator --id $i --peers "$TPEERS" --data-dir "$T/data$i" --token-file "$WORK/token" \
      --tls-cert "$T/node.pem" --tls-key "$T/node.key" --tls-ca "$T/ca.pem" >>"$WORK/node-tls$i.log" 2>&1 &
    PID[1$i]=$!
  done
  tkv() { "$COHORT" kv --coordinator "$TEPS" --token-file "$WORK/token" --timeout-ms 10000 "$@"; }
  tleader=0
  for _ in $(seq 200); do  # 20 s at most
    tleader=$("$COHORT" status --coordinator "$TEPS" --token-file "$WORK/token" --tls-ca "$T/ca.pem" --json \
              2>>"$WORK/tls-status.err" | json_field '["leader"]' 2>/dev/null || echo 0)
    [[ -n "$tleader" && "$tleader" != 0 ]] && break
    sleep 0.1
  done
  [[ -n "$tleader" && "$tleader" != 0 ]] && pass "TLS cluster elected node $tleader" ||
    die "TLS cluster: no leader within 20 s; last status error: $(tail -2 "$WORK/tls-status.err")"
  if tkv --tls-ca "$T/ca.pem" put secure yes >/dev/null 2>"$WORK/tls.err" &&
     [[ "$(tkv --tls-ca "$T/ca.pem" get secure 2>>"$WORK/tls.err")" == yes ]]; then
    pass "TLS cluster: put and get over TLS"
  else fail "TLS cluster: put/get failed: $(cat "$WORK/tls.err")"; fi
  if "$COHORT" kv --coordinator "$TEPS" --token-file "$WORK/token" --timeout-ms 1000 get secure >/dev/null 2>&1; then
    fail "a plaintext client got an answer from a TLS cluster"
  else pass "plaintext client refused by the TLS cluster"; fi
else
  echo "skip: TLS (no openssl)"
fi

echo "FAILOVER_MS=$FAILOVER_MS"
if ((failures > 0)); then
  for f in "$WORK"/node*.log; do echo "--- $f" >&2; tail -8 "$f" >&2; done
  for m in "${FAILED[@]}"; do echo "FAIL: $m" >&2; done
  echo "$failures check(s) failed" >&2; exit 1
fi
echo "all checks passed"
