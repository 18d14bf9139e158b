#!/usr/bin/env bash
# The golden training test, GPU against CPU, through `cohort train` (the whole
# Trainer: data, model, optimizer, the NCCL backend): the same job on
# --device cpu and --device cuda ends with the same parameters within the
# stated tolerances. Labelled `gpu`; exits 77 (skipped) when no rank would get
# a GPU (no device, or a build without CUDA), saying why.
#   fp32 SGD with momentum: 1e-4 relative (cuBLAS strict fp32 against
#     OpenBLAS; sums run in other orders, BiasGrad adds by atomics);
#   fp32 AdamW: 1e-3 (Adam turns a rounding difference in a gradient element
#     that cancels to near zero into an update of up to lr; see golden_dp.sh);
#   bf16 AdamW: 2e-2 (a product near a bf16 rounding boundary can round the
#     other way once the fp32 sums differ in their last bits).
# With two GPUs or more it also runs 2 ranks on NCCL against 1 rank on the CPU.
source "$(dirname "$0")/../cli/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff

small_config "$WORK/probe.yaml" 1 128
$MPIRUN -np 1 "$COHORT" train --config "$WORK/probe.yaml" --device auto > "$WORK/probe.out" 2> "$WORK/probe.err" \
  || { cat "$WORK/probe.err" >&2; echo "FAIL: --device auto did not run"; exit 1; }
if tail -1 "$WORK/probe.out" | grep -q '"device":"cpu"'; then
  echo "skipped: --device auto chose the CPU (no CUDA device here, or a build without CUDA): $(grep -o 'auto:[^"]*' "$WORK/probe.err" "$WORK/probe.out" | head -1)"
  exit 77
fi
gpus=$(nvidia-smi -L 2> /dev/null | wc -l)

run() {  # name np device [extra flags...]
  local name=$1 np=$2 device=$3
  shift 3
  $MPIRUN -np "$np" "$COHORT" train --config "$cfg" --device "$device" --save-params "$WORK/$name.safetensors" "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.err" || { cat "$WORK/$name.err" >&2; fail "$name: run failed"; return 1; }
  echo "  $name: $(tail -1 "$WORK/$name.out" | grep -o '"device":"[^"]*"\|"step_ms":[0-9.]*\|"final_loss":[0-9.]*' | tr '\n' ' ')"
}

for case in sgd:fp32:1e-4 adamw:fp32:1e-3 adamw:bf16:2e-2; do
  IFS=: read -r opt prec tol <<< "$case"
  cfg=$WORK/$opt.$prec.yaml
  small_config "$cfg" 25 128
  [[ $opt == adamw ]] && sed -i 's/type: sgd/type: adamw/; s/lr: 0.05/lr: 0.001/; /momentum/d; s/activation: relu/activation: gelu/' "$cfg"
  sed -i "/log_every/a\\  precision: $prec" "$cfg"
  run "$opt.$prec.cpu" 1 cpu --backend mpi || continue
  run "$opt.$prec.cuda" 1 cuda || continue
  tail -1 "$WORK/$opt.$prec.cuda.out" | grep -q '"device":"cuda:' || fail "$opt $prec: the cuda run's summary names another device"
  if "$DIFF" "$WORK/$opt.$prec.cpu.safetensors" "$WORK/$opt.$prec.cuda.safetensors" "$tol"; then
    pass "$opt $prec: GPU == CPU after 25 steps (rtol $tol)"
  else
    fail "$opt $prec: GPU diverges from CPU"
  fi
done

# The GPU needs a communicator that works on device memory.
cfg=$WORK/sgd.fp32.yaml
if $MPIRUN -np 1 "$COHORT" train --config "$cfg" --device cuda --backend mpi > /dev/null 2> "$WORK/mpi.err"; then
  fail "--device cuda --backend mpi ran"
else
  grep -q "nccl" "$WORK/mpi.err" && pass "--device cuda --backend mpi is refused, naming nccl" \
    || { cat "$WORK/mpi.err" >&2; fail "--device cuda --backend mpi: unclear error"; }
fi

if ((gpus >= 2)); then
  run nccl.np2 2 cuda --backend auto || true
  grep -q '"backend":"nccl"' "$WORK/nccl.np2.out" && pass "2 ranks on GPUs: --backend auto chose nccl" \
    || fail "2 ranks on GPUs: the summary names another backend"
  "$DIFF" "$WORK/sgd.fp32.cpu.safetensors" "$WORK/nccl.np2.safetensors" 1e-4 \
    && pass "2 ranks on NCCL == 1 rank on the CPU (rtol 1e-4)" || fail "2 ranks on NCCL diverge from 1 rank on the CPU"
else
  echo "note: $gpus GPU(s): the 2-rank NCCL case needs two"
fi
finish
