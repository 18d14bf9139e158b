#!/usr/bin/env bash
# Fault-free `cohort launch --nproc 2` trains like a plain 2-rank mpirun job:
# same data and global batch, so the losses agree up to the order of float sums.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"

small_config "$WORK/c.yaml" 40 128
timeout 300 $MPIRUN -np 2 "$COHORT" train --config "$WORK/c.yaml" --backend gloo > "$WORK/plain.out" 2> "$WORK/plain.err" \
  || fail "plain run failed: $(tail -3 "$WORK/plain.err")"
start=$SECONDS
rc=0
timeout 300 "$COHORT" launch --nproc 2 -- "$COHORT" train --config "$WORK/c.yaml" > "$WORK/el.out" 2> "$WORK/el.err" || rc=$?
((rc == 0)) && pass "launch --nproc 2 exits 0 ($((SECONDS - start)) s)" || fail "launch exited $rc: $(tail -5 "$WORK/el.err")"
plain=$(json_field "$WORK/plain.out" final_loss)
el=$(json_field "$WORK/el.out" final_loss)
close_to "$el" "$plain" 0.001 && pass "final loss $el matches the plain run's $plain (1e-3 relative)" \
  || fail "final loss $el vs plain $plain"
[[ $(json_field "$WORK/el.out" epochs) == 1 ]] && pass "one epoch" || fail "epochs: $(json_field "$WORK/el.out" epochs)"
[[ $(json_field "$WORK/el.out" recoveries) == "[]" ]] && pass "no recovery" || fail "recoveries: $(json_field "$WORK/el.out" recoveries)"
[[ $(json_field "$WORK/el.out" samples_seen) == $((40 * 128)) ]] && pass "samples_seen = 40 x 128" \
  || fail "samples_seen $(json_field "$WORK/el.out" samples_seen)"
[[ $(json_field "$WORK/el.out" world_size) == 2 ]] || fail "world_size $(json_field "$WORK/el.out" world_size)"
finish
