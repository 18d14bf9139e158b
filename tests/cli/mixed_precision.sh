#!/usr/bin/env bash
# Mixed precision (train.precision) end to end, on the golden model of
# golden_dp.sh (784-128-128-10, global batch 128, SGD momentum, 25 steps; GELU
# as in golden_parallel.sh, so rounding differences stay smooth):
# - fp32 named explicitly is bit-for-bit the default run;
# - bf16 and fp16 follow the fp32 loss curve and end near its parameters,
#   but not on them (the 16-bit path is really used);
# - fp16 with a huge initial loss scale skips its first steps, backs off, and
#   then trains (100 steps, where this model's loss falls to about 0.6x);
# - bf16 on 2 ranks (and with ZeRO-1, and tensor parallel 2) gives the same
#   parameters on both ranks and matches 1 rank with the same global batch;
# - fp16 under ZeRO-1 agrees on overflow: both ranks skip the same steps.
# Runs use --backend mpi: the auto backend's set-up costs ~4 s per 2-rank run.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff

run() {  # name np config [--save-params path]
  local name=$1 np=$2 cfg=$3 save=${4:-$WORK/$1.safetensors}
  $MPIRUN -np "$np" "$COHORT" train --config "$cfg" --backend mpi --save-params "$save" \
    > "$WORK/$name.out" 2> "$WORK/$name.err" || { cat "$WORK/$name.err" >&2; fail "$name: run failed"; return 1; }
}
field() { tail -1 "$WORK/$1.out" | sed -E "s/.*\"$2\":\"?([0-9A-Za-z.eE+-]+)\"?.*/\\1/"; }
losses() { sed -nE 's/^step +([0-9]+)\/[0-9]+ +loss +([0-9.]+).*/\1 \2/p' "$WORK/$1.out"; }
config() {  # file precision [extra train lines]
  small_config "$1" 25 128
  sed -i 's/activation: relu/activation: gelu/; s/log_every: 5/log_every: 1/' "$1"
  [[ -n $2 ]] && sed -i "s/^train:/train:\n  precision: $2/" "$1"
  if [[ -n ${3:-} ]]; then sed -i "s/^train:/train:\n$3/" "$1"; fi
}

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

# Two ranks: bf16 data parallel, bf16 ZeRO-1, bf16 tensor parallel 2, each
# against 1 rank. Every rank writes its parameters ({rank}); the replicas must
# be identical. Another summation order (two half batches plus an all-reduce,
# or split GEMMs) moves an fp32 value by ~1e-7, which now and then flips its
# bf16 rounding by one unit (2^-9), so the bound against 1 rank is u (2e-3),
# not fp32's 1e-5; measured: 2.7e-4 (data parallel, ZeRO-1), 7.5e-5 (tensor).
config "$WORK/zero.yaml" bf16; printf 'parallel:\n  zero: 1\n' >> "$WORK/zero.yaml"
config "$WORK/tp.yaml" bf16; printf 'parallel:\n  tensor: 2\n' >> "$WORK/tp.yaml"
for c in bf16 zero tp; do
  run "np2-$c" 2 "$WORK/$c.yaml" "$WORK/np2-$c.r{rank}.safetensors" || continue
  "$DIFF" "$WORK/np2-$c.r0.safetensors" "$WORK/np2-$c.r1.safetensors" 0 > /dev/null \
    && pass "bf16 $c, 2 ranks: both ranks hold the same parameters (bitwise)" || fail "bf16 $c: ranks diverged"
  "$DIFF" "$WORK/bf16.safetensors" "$WORK/np2-$c.r0.safetensors" 2e-3 \
    && pass "bf16 $c, 2 ranks == 1 rank with the same global batch (rtol 2e-3)" || fail "bf16 $c: 2 ranks diverge from 1 rank"
done

# fp16 under ZeRO-1: each rank unscales only its half of the gradients, so
# the ranks must agree on overflow explicitly or they would diverge.
cp "$WORK/huge.yaml" "$WORK/huge-zero.yaml"; printf 'parallel:\n  zero: 1\n' >> "$WORK/huge-zero.yaml"
if run huge-zero 2 "$WORK/huge-zero.yaml" "$WORK/huge-zero.r{rank}.safetensors"; then
  "$DIFF" "$WORK/huge-zero.r0.safetensors" "$WORK/huge-zero.r1.safetensors" 0 > /dev/null \
    && pass "fp16 ZeRO-1 from scale 2^32: both ranks agree ($(field huge-zero skipped_steps) skipped)" \
    || fail "fp16 ZeRO-1: ranks diverged"
  (($(field huge-zero skipped_steps) > 0)) || fail "fp16 ZeRO-1: no step skipped"
fi
finish
