#!/usr/bin/env bash
# Mixed precision on 2 ranks (the golden model of mixed_precision.sh):
# - bf16 data parallel, ZeRO-1 and tensor parallel 2 each give the same
#   parameters on both ranks and match 1 rank with the same global batch;
# - fp16 under ZeRO-1 and tensor parallel 2 agrees on overflow: both ranks
#   skip the same steps.
source "$(dirname "$0")/lib.sh" "$@"
source "$(dirname "$0")/lib_mixed.sh"

config "$WORK/bf16.yaml" bf16
run bf16 1 "$WORK/bf16.yaml" || finish
config "$WORK/huge.yaml" fp16 "  loss_scale: {initial: 4294967296, growth_interval: 1000}"
sed -i 's/steps: 25/steps: 100/' "$WORK/huge.yaml"

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

# fp16 under ZeRO-1 and tensor parallelism: each rank unscales only its part
# of the gradients (its partition, its tensor slice), so the ranks must agree
# on overflow explicitly or they would diverge. (On this model an overflow in
# the output gradient spreads to every layer's gradients, so every rank sees
# it even without the agreement; these runs check that the agreed path skips,
# backs off and keeps the replicas identical. The agreement itself is tested
# by injecting an inf into one rank's partition: runtime/trainer_fp16_test.cc.)
for c in zero:1 tensor:2; do
  name=huge-${c%%:*}
  cp "$WORK/huge.yaml" "$WORK/$name.yaml"; printf 'parallel:\n  %s %s\n' "${c%%:*}:" "${c#*:}" >> "$WORK/$name.yaml"
  run "$name" 2 "$WORK/$name.yaml" "$WORK/$name.r{rank}.safetensors" || continue
  "$DIFF" "$WORK/$name.r0.safetensors" "$WORK/$name.r1.safetensors" 0 > /dev/null \
    && pass "fp16 $c from scale 2^32: both ranks agree ($(field "$name" skipped_steps) skipped)" \
    || fail "fp16 $c: ranks diverged"
  (($(field "$name" skipped_steps) > 0)) || fail "fp16 $c: no step skipped"
done
finish
