#!/usr/bin/env bash
# Checkpoints: train, checkpoint, restore, train again == an uninterrupted run.
# - same layout (2 ranks): bitwise identical;
# - across layouts (data 2 -> tensor 2 x data 2, ZeRO-1 x 4 -> 2 ranks,
#   tensor 2 x data 2 -> 1 rank): 1e-5 relative with SGD, 1e-3 with AdamW;
# - only committed checkpoints count: a checkpoint without MANIFEST.json, or
#   with a damaged shard, is passed over for the previous committed one;
# - a stop signal (SIGUSR1/SIGTERM) ends the run at a step boundary with a
#   committed checkpoint and exit 75; the rerun equals an uninterrupted run;
# - retention keeps the newest `keep`; `cohort ckpt verify` names damage.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff

cfg() {  # file dir opt [parallel lines...]
  small_config "$1" 40 128
  sed -i 's/activation: relu/activation: gelu/' "$1"
  if [[ $3 == adamw ]]; then sed -i 's/type: sgd/type: adamw/; s/lr: 0.05/lr: 0.001/; /momentum/d' "$1"; fi
  printf 'checkpoint:\n  dir: %s\n  every: 10\n  keep: 2\n' "$2" >> "$1"
  shift 3
  if (($# > 0)); then printf 'parallel:\n' >> "$1"; for l in "$@"; do printf '  %s\n' "${l//_/ }" >> "$1"; done; fi
}
train() {  # np config extra-args...
  local np=$1 c=$2; shift 2
  $MPIRUN -np "$np" "$COHORT" train --config "$c" "$@" > "$WORK/last.out" 2> "$WORK/last.err" \
    || { cat "$WORK/last.err" >&2; return 1; }
}

# 1. Same layout, bitwise.
cfg "$WORK/a.yaml" "$WORK/ck_a" sgd
cfg "$WORK/ref.yaml" "$WORK/ck_ref" sgd
train 2 "$WORK/ref.yaml" --save-params "$WORK/ref.st" || fail "uninterrupted run"
train 2 "$WORK/a.yaml" --steps 20 || fail "first half"
train 2 "$WORK/a.yaml" --save-params "$WORK/a.st" || fail "second half"
grep -q "resumed from $WORK/ck_a/step-000000020" "$WORK/last.out" && pass "resumed at step 20" || fail "did not resume: $(head -3 "$WORK/last.out")"
"$DIFF" "$WORK/ref.st" "$WORK/a.st" 0 && pass "2 ranks: 20 + 20 steps == 40 steps, bitwise" || fail "resume differs"
n=$("$COHORT" ckpt inspect --json "$WORK/ck_a" | grep -o '"committed":true' | wc -l)
((n == 2)) && pass "retention keeps 2 committed" || fail "retention: $n committed"

# 2. Across layouts: the reference is 1 rank, uninterrupted, same global batch.
cross() {  # name opt tol "np_a parallel_a" "np_b parallel_b"
  local name=$1 opt=$2 tol=$3; read -r npa pa <<< "$4"; read -r npb pb <<< "$5"
  cfg "$WORK/r_$name.yaml" "$WORK/ckr_$name" "$opt"
  train 1 "$WORK/r_$name.yaml" --no-resume --save-params "$WORK/r_$name.st" || { fail "$name reference"; return; }
  cfg "$WORK/a_$name.yaml" "$WORK/ck_$name" "$opt" $pa
  cfg "$WORK/b_$name.yaml" "$WORK/ck_$name" "$opt" $pb
  train "$npa" "$WORK/a_$name.yaml" --steps 20 || { fail "$name: first half"; return; }
  train "$npb" "$WORK/b_$name.yaml" --save-params "$WORK/b_$name.st" || { fail "$name: second half"; return; }
  grep -q "resumed from" "$WORK/last.out" || fail "$name: did not resume"
  "$DIFF" "$WORK/r_$name.st" "$WORK/b_$name.st" "$tol" && pass "$name: resumed on another layout == 1 rank (rtol $tol)" \
    || fail "$name: resumed run diverges"
}
cross dp2_to_tp2x2 sgd 1e-5 "2 " "4 tensor:_2"
cross zero4_to_dp2 adamw 1e-3 "4 zero:_1" "2 "
cross tp2x2_to_one sgd 1e-5 "4 tensor:_2" "1 "

# 3. Uncommitted and damaged checkpoints are passed over.
cfg "$WORK/d.yaml" "$WORK/ck_d" sgd
train 2 "$WORK/d.yaml" --steps 30 || fail "damage setup"
rm "$WORK/ck_d/step-000000030/MANIFEST.json"   # as if the job died before the commit
train 2 "$WORK/d.yaml" --steps 30 || fail "resume past an uncommitted checkpoint"
grep -q "resumed from $WORK/ck_d/step-000000020" "$WORK/last.out" && pass "uncommitted step 30 ignored, resumed at 20" \
  || fail "uncommitted: $(head -2 "$WORK/last.out")"
printf '\xff\xff' | dd of="$WORK/ck_d/step-000000030/rank-00000.safetensors" bs=1 seek=2000 conv=notrunc status=none
if "$COHORT" ckpt verify "$WORK/ck_d" > "$WORK/verify.out"; then fail "verify accepted a damaged shard"; else
  grep -q "DAMAGED.*step-000000030.*rank-00000.safetensors" "$WORK/verify.out" && pass "verify names the damaged shard" \
    || fail "verify output: $(cat "$WORK/verify.out")"
fi
train 2 "$WORK/d.yaml" --steps 40 || fail "resume past a damaged checkpoint"
grep -q "resumed from $WORK/ck_d/step-000000020" "$WORK/last.out" && grep -q "damaged" "$WORK/last.err" \
  && pass "damaged step 30 skipped with a warning, resumed at 20" || fail "damaged: $(cat "$WORK/last.err")"

# 4. A stop signal (SIGUSR1 to mpirun, which forwards it; Slurm's SIGTERM
#    works the same): every rank stops after the same step K with a committed
#    checkpoint at K and exits 75; the rerun resumes at K; bitwise equal to an
#    uninterrupted run.
cfg "$WORK/s.yaml" "$WORK/ck_s" sgd
cfg "$WORK/sref.yaml" "$WORK/ck_sref" sgd
train 2 "$WORK/sref.yaml" --steps 400 --save-params "$WORK/sref.st" || fail "stop: uninterrupted run"
$MPIRUN -np 2 "$COHORT" train --config "$WORK/s.yaml" --steps 400 > "$WORK/s1.out" 2> "$WORK/s1.err" &
mpirun_pid=$!
for ((i = 0; i < 300; i++)); do  # until rank 0 has started (every rank then catches the signal)
  grep -q "^cohort train:" "$WORK/s1.out" && break
  sleep 0.1
done
kill -USR1 "$mpirun_pid"
rc=0
wait "$mpirun_pid" || rc=$?
summary=$(grep '^{' "$WORK/s1.out" | tail -n 1)
k=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s["end_step"] if s["stopped_early"] and s["stop_signal"] == "USR1" else -1)' "$summary" 2>/dev/null || echo -1)
if ((k > 0 && k < 400)) && grep -q "stopped by User defined signal 1 after step $k" "$WORK/s1.out"; then
  pass "SIGUSR1: stopped after step $k, checkpoint committed (mpirun exit $rc)"
else
  fail "SIGUSR1 did not stop the run early: rc $rc, $(tail -n 3 "$WORK/s1.out") $(tail -n 3 "$WORK/s1.err")"
fi
train 2 "$WORK/s.yaml" --steps 400 --save-params "$WORK/s.st" || fail "stop: the rerun"
grep -q "resumed from $WORK/ck_s/step-$(printf %09d "$k") .* at step $k;" "$WORK/last.out" \
  && pass "the rerun resumed at step $k" || fail "stop: no resume at $k: $(head -3 "$WORK/last.out")"
"$DIFF" "$WORK/sref.st" "$WORK/s.st" 0 && pass "stopped at $k + resumed == 400 steps, bitwise" || fail "stop + resume differs"
finish
