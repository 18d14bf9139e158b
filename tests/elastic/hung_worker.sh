#!/usr/bin/env bash
# SIGSTOP of one of 4 workers: its heartbeats stop, the launcher's breaker
# (phi accrual, --health-pause-ms 3000) opens, the launcher kills it, and the
# other 3 finish in a new epoch with exit 0.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 600 128
timeout 300 "$COHORT" launch --nproc 4 --min 2 -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/el.out" 2> "$WORK/el.err" &
launcher=$!
wait_for_step "$WORK/el.out" 60 || fail "no progress to step 60"
mapfile -t pids < <(worker_pids $launcher)
victim=${pids[2]}
stopped_at=$(date +%s%3N)
kill -STOP "$victim"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0 after SIGSTOP of one worker" || fail "launch exited $rc: $(tail -8 "$WORK/el.err")"
grep -q "stopped heartbeating" "$WORK/el.err" && pass "evicted: $(grep 'stopped heartbeating' "$WORK/el.err")" \
  || fail "no eviction: $(cat "$WORK/el.err")"
kill -0 "$victim" 2>/dev/null && { fail "the stopped worker still exists"; kill -9 "$victim"; }
failed_at=$(tail -n 1 "$WORK/el.out" | python3 -c "import json,sys; print(json.load(sys.stdin)['recoveries'][0]['failed_at_ms'])")
echo "eviction $(( (failed_at - stopped_at) )) ms after SIGSTOP"
(( failed_at - stopped_at < 30000 )) && pass "evicted within 30 s" || fail "evicted after $((failed_at - stopped_at)) ms"
[[ $(json_field "$WORK/el.out" world_size) == 3 ]] && pass "finished on 3 ranks" || fail "world_size $(json_field "$WORK/el.out" world_size)"
finish
