#!/usr/bin/env bash
# Golden, under mpirun with 4 ranks: tensor parallel 2 x data parallel 2, and
# ZeRO-1 over 4 data ranks, each train the same parameters as 1 rank with the
# same global batch (25 steps): to 1e-5 relative with SGD momentum, to 1e-3
# with AdamW (see golden_dp.sh for why Adam amplifies summation-order
# rounding). Also: ZeRO-1 cuts each rank's optimizer state to 1/4, and a
# 3-layer split (odd layer count: the last layer replicated) and a 4-layer
# split (row-parallel last layer) both match. The models use GELU: with ReLU
# a pre-activation within rounding distance of zero can take the other side of
# the kink in another summation order, and after a few dozen steps of SGD that
# one flip outgrows any tolerance (seen with the 5-layer model at step ~12,
# also for plain data parallelism); GELU keeps rounding differences smooth.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff

run() {  # name np config
  $MPIRUN -np "$2" "$COHORT" train --config "$3" --save-params "$WORK/$1.safetensors" > "$WORK/$1.out" 2> "$WORK/$1.err" \
    || { cat "$WORK/$1.err" >&2; fail "$1: run failed"; return 1; }
}
field() { tail -1 "$WORK/$1.out" | sed -E "s/.*\"$2\":([0-9.eE+-]+).*/\\1/"; }

for opt in sgd adamw; do
  for layers in "784, 128, 128, 10" "784, 64, 96, 32, 10"; do
    tag=$opt-$(tr -d ' ,' <<< "$layers" | head -c 12)
    small_config "$WORK/base.yaml" 25 128
    sed -i "s/\[784, 128, 128, 10\]/[$layers]/; s/activation: relu/activation: gelu/" "$WORK/base.yaml"
    if [[ $opt == adamw ]]; then
      sed -i 's/type: sgd/type: adamw/; s/lr: 0.05/lr: 0.001/; /momentum/d' "$WORK/base.yaml"
    fi
    tol=1e-5; [[ $opt == adamw ]] && tol=1e-3
    cp "$WORK/base.yaml" "$WORK/tp.yaml"; printf 'parallel:\n  tensor: 2\n' >> "$WORK/tp.yaml"
    cp "$WORK/base.yaml" "$WORK/zero.yaml"; printf 'parallel:\n  zero: 1\n' >> "$WORK/zero.yaml"
    run "$tag-1" 1 "$WORK/base.yaml" || continue
    if run "$tag-tp" 4 "$WORK/tp.yaml"; then
      [[ $(field "$tag-tp" tensor_parallel) == 2 && $(field "$tag-tp" data_parallel) == 2 ]] || fail "$tag: layout not 2 x 2"
      "$DIFF" "$WORK/$tag-1.safetensors" "$WORK/$tag-tp.safetensors" $tol \
        && pass "$tag: tensor 2 x data 2 == 1 rank (rtol $tol)" || fail "$tag: tensor-parallel run diverges"
    fi
    if run "$tag-zero" 4 "$WORK/zero.yaml"; then
      "$DIFF" "$WORK/$tag-1.safetensors" "$WORK/$tag-zero.safetensors" $tol \
        && pass "$tag: ZeRO-1 over 4 == 1 rank (rtol $tol)" || fail "$tag: ZeRO-1 run diverges"
      one=$(field "$tag-1" optimizer_state_bytes); four=$(field "$tag-zero" optimizer_state_bytes)
      awk -v a="$one" -v b="$four" 'BEGIN { exit !(b * 4 <= a + 64 && b * 4 >= a - 64) }' \
        && pass "$tag: optimizer state per rank $one -> $four bytes (1/4)" || fail "$tag: optimizer state $one -> $four, not 1/4"
    fi
  done
done
finish
