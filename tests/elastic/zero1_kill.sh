#!/usr/bin/env bash
# A ZeRO-1 elastic job (optimizer state partitioned over the data ranks)
# survives kill -9 of one of 4 workers: the snapshot gathers the partitions
# and the survivors re-split them over 3 ranks. The final loss is within a
# tolerance of the fault-free run's (TOL x the initial loss, as in
# kill_worker.sh; elastic.batch global keeps 96 samples per step on 3 ranks,
# but the survivors redo a few steps and see other samples).
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
TOL=${ELASTIC_LOSS_TOL:-0.1}

small_config "$WORK/c.yaml" 200 96
printf 'parallel:\n  zero: 1\nelastic:\n  batch: global\n' >> "$WORK/c.yaml"
run_reference "$WORK/c.yaml"
start_job_until_step "$WORK/c.yaml" 45
kill -9 "${pids[3]}"
rc=0
wait $launcher || rc=$?
((rc == 0)) && pass "ZeRO-1 job exits 0 after kill -9 of one worker" || fail "launch exited $rc: $(tail -8 "$WORK/el.err")"
[[ $(json_field "$WORK/el.out" world_size) == 3 ]] && pass "finished on 3 ranks" || fail "world_size $(json_field "$WORK/el.out" world_size)"
epochs=$(json_field "$WORK/el.out" epochs)
((epochs >= 2)) && pass "epochs = $epochs" || fail "epochs = $epochs"
ref=$(json_field "$WORK/ref.out" final_loss)
el=$(json_field "$WORK/el.out" final_loss)
init=$(json_field "$WORK/ref.out" initial_loss)
python3 -c "import sys; sys.exit(0 if abs($el - $ref) <= $TOL * $init else 1)" \
  && pass "final loss $el within $TOL x initial loss $init of the fault-free $ref" \
  || fail "final loss $el vs fault-free $ref (initial $init)"
python3 -c "import sys; sys.exit(0 if $el < 0.7 * $init else 1)" && pass "loss fell $init -> $el" || fail "loss $init -> $el"
finish
