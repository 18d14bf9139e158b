#!/usr/bin/env bash
# Mixed precision (train.precision) end to end, on the golden model of
# golden_dp.sh (784-128-128-10, global batch 128, SGD momentum, 25 steps; GELU
# as in golden_parallel.sh, so rounding differences stay smooth):
# - fp32 named explicitly is bit-for-bit the default run;
# - bf16 and fp16 follow the fp32 loss curve and end near its parameters,
#   but not on them (the 16-bit path is really used);
# - fp16 with a huge initial loss scale skips its first steps, backs off, and
#   then trains (100 steps, where this model's loss falls to about 0.6x);
# - the fp16 loss scaler's state is checkpointed and restored.
# Two ranks: mixed_precision_np2.sh.
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/lib_mixed.sh"

config "$WORK/default.yaml" ""
config "$WORK/fp32.yaml" fp32
config "$WORK/bf16.yaml" bf16
config "$WORK/fp16.yaml" fp16
for p in default fp32 bf16 fp16; do run "$p" 1 "$WORK/$p.yaml" || true; done

"$DIFF" "$WORK/default.safetensors" "$WORK/fp32.safetensors" 0 > /dev/null \
  && pass "precision: fp32 == no precision key (bitwise)" || fail "precision: fp32 changed the fp32 run"
[[ $(field fp32 precision) == fp32 && $(field fp32 skipped_steps) == 0 ]] || fail "fp32 summary: $(tail -1 "$WORK/fp32.out")"

# Tolerances, from the unit roundoff u of the 16-bit type: bf16 keeps 8
# significant bits (u = 2^-9 = 2.0e-3), fp16 11 (u = 2^-12 = 2.4e-4). Each
# logit sums k products of rounded inputs in fp32; the rounding errors are
# independent and partly cancel, so a logit, and the batch-mean loss, moves by
# less than u relative: the loss-curve bound is u for bf16 and 2u for fp16
# (the progress lines print 4 decimals, 4e-5 of a loss near 2.3). The
# parameters after 25 steps carry the steps' gradient errors, each of order
# u times an update: bound 2.5u (bf16, 5e-3) and 4u (fp16, 1e-3). Measured
# here: loss curves within 4.4e-5 (both: the print resolution), parameters
# 7.4e-4 (bf16) and 1.0e-4 (fp16) off fp32. "Differs" means more than 1e-5,
# 30x the summation-order noise of fp32 (2 ranks vs 1: 3.5e-7).
for p in bf16:2e-3:5e-3 fp16:5e-4:1e-3; do
  IFS=: read -r prec ltol ptol <<< "$p"
  [[ $(field "$prec" precision) == "$prec" ]] || fail "$prec: summary names precision $(field "$prec" precision)"
  [[ $(field "$prec" skipped_steps) == 0 ]] || fail "$prec: skipped $(field "$prec" skipped_steps) steps (want 0)"
  worst=$(join <(losses fp32) <(losses "$prec") | awk '{ d = ($3 - $2) / $2; if (d < 0) d = -d; if (d > w) w = d; n++ }
                                                     END { if (n != 25) print "missing"; else printf "%.6f\n", w }')
  if [[ $worst != missing ]] && awk -v w="$worst" -v t="$ltol" 'BEGIN { exit !(w <= t) }'; then
    pass "$prec: loss curve within $worst of fp32 at every step (bound $ltol)"
  else
    fail "$prec: loss curve off fp32 by $worst (bound $ltol)"
  fi
  "$DIFF" "$WORK/fp32.safetensors" "$WORK/$prec.safetensors" "$ptol" \
    && pass "$prec: parameters within rtol $ptol of fp32" || fail "$prec: parameters off fp32"
  rc=0; "$DIFF" "$WORK/fp32.safetensors" "$WORK/$prec.safetensors" 1e-5 > /dev/null || rc=$?
  ((rc == 1)) && pass "$prec: parameters differ from fp32 by more than 1e-5 (the 16-bit path ran)" \
    || fail "$prec: parameters equal fp32 to 1e-5: the 16-bit path did not run"
done
awk -v s="$(field fp16 loss_scale)" 'BEGIN { exit !(s == 65536) }' && pass "fp16: default loss scale 65536 kept (no overflow, interval 2000)" \
  || fail "fp16: loss scale $(field fp16 loss_scale), want 65536"

# A huge initial scale: the scaled output gradient overflows fp16 (65504)
# until the scale has backed off far enough; then training proceeds.
config "$WORK/huge.yaml" fp16 "  loss_scale: {initial: 4294967296, growth_interval: 1000}"
sed -i 's/steps: 25/steps: 100/' "$WORK/huge.yaml"
if run huge 1 "$WORK/huge.yaml"; then
  skipped=$(field huge skipped_steps); scale=$(field huge loss_scale); ratio=$(field huge loss_ratio)
  # Skipped steps all come first and halve the scale each time.
  awk -v k="$skipped" -v s="$scale" -v r="$ratio" 'BEGIN { exit !(k > 0 && k < 20 && s == 4294967296 / 2 ^ k && r < 0.8) }' \
    && pass "fp16 from scale 2^32: skipped $skipped steps, scale $scale = 2^32 / 2^$skipped, loss ratio $ratio" \
    || fail "fp16 from scale 2^32: skipped $skipped, scale $scale, loss ratio $ratio"
fi

# The loss scaler's state travels in checkpoints: 5 steps (all skipped, the
# scale backs off to 2^27), then a resume to 100 steps gives bitwise the
# uninterrupted run, final scale included (restarting from 2^32 would skip 5
# more steps and end elsewhere). A checkpoint without scaler state (written by
# an fp32 run, as by builds before it existed) still loads.
cp "$WORK/huge.yaml" "$WORK/huge-ck.yaml"; printf 'checkpoint:\n  dir: %s\n  every: 5\n' "$WORK/ck" >> "$WORK/huge-ck.yaml"
if run huge-ck5 1 "$WORK/huge-ck.yaml" "$WORK/unused.safetensors" --steps 5 && run huge-ck 1 "$WORK/huge-ck.yaml"; then
  grep -q "resumed from $WORK/ck/step-000000005" "$WORK/huge-ck.out" || fail "fp16 checkpoint: did not resume at step 5"
  awk -v s="$(field huge-ck5 loss_scale)" 'BEGIN { exit !(s == 2 ^ 27) }' || fail "fp16 first 5 steps: scale $(field huge-ck5 loss_scale), want 2^27"
  "$DIFF" "$WORK/huge.safetensors" "$WORK/huge-ck.safetensors" 0 > /dev/null \
    && [[ $(field huge-ck loss_scale) == "$(field huge loss_scale)" ]] \
    && pass "fp16: 5 steps + checkpoint + 95 resumed == 100 steps (bitwise, scale $(field huge-ck loss_scale))" \
    || fail "fp16: resumed run differs (scale $(field huge-ck loss_scale) vs $(field huge loss_scale))"
fi
cp "$WORK/fp32.yaml" "$WORK/old-ck.yaml"; printf 'checkpoint:\n  dir: %s\n' "$WORK/ck-old" >> "$WORK/old-ck.yaml"
sed 's/precision: fp32/precision: fp16/' "$WORK/old-ck.yaml" > "$WORK/old-ck16.yaml"
if run old-ck 1 "$WORK/old-ck.yaml" && sed -i 's/steps: 25/steps: 30/' "$WORK/old-ck16.yaml" && run old-ck16 1 "$WORK/old-ck16.yaml"; then
  grep -q "resumed from $WORK/ck-old/step-000000025" "$WORK/old-ck16.out" \
    && awk -v s="$(field old-ck16 loss_scale)" 'BEGIN { exit !(s == 65536) }' \
    && pass "an fp32 checkpoint (no scaler state) resumes under fp16 at the configured scale" \
    || fail "fp32 checkpoint under fp16: $(head -3 "$WORK/old-ck16.out")"
fi

finish
