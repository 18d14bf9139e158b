#!/usr/bin/env bash
# elastic.batch global: a shrink from 4 workers to 3 keeps the global batch
# (96 = 4 x 24 = 3 x 32), so every step trained the same number of samples;
# elastic.lr linear then leaves the learning rate alone.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 150 96
printf 'elastic: {batch: global, lr: linear}\n' >> "$WORK/c.yaml"
start_job_until_step "$WORK/c.yaml" 40
kill -9 "${pids[1]}"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "launch exits 0" || fail "launch exited $rc: $(tail -8 "$WORK/el.err")"
[[ $(json_field "$WORK/el.out" world_size) == 3 ]] && pass "finished on 3 ranks" || fail "world_size $(json_field "$WORK/el.out" world_size)"
[[ $(json_field "$WORK/el.out" batch_per_rank) == 32 ]] && pass "32 per rank on 3 ranks" \
  || fail "batch_per_rank $(json_field "$WORK/el.out" batch_per_rank)"
run=$(json_field "$WORK/el.out" steps_run)
seen=$(json_field "$WORK/el.out" samples_seen)
[[ $seen == $((run * 96)) ]] && pass "samples_seen $seen = $run steps x 96" || fail "samples_seen $seen for $run steps"
hist=$(json_field "$WORK/el.out" epoch_history)
python3 -c "
import json, sys
h = json.loads(sys.argv[1])
ok = len(h) >= 2 and h[0]['world_size'] == 4 and h[-1]['world_size'] == 3
ok = ok and all(e['global_batch'] == 96 and abs(e['lr'] - 0.05) < 1e-9 for e in h)
sys.exit(0 if ok else 1)" "$hist" && pass "epoch_history: 4 then 3 ranks, global 96, lr 0.05: $hist" || fail "epoch_history $hist"
finish
