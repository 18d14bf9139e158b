# Helpers shared by mixed_precision.sh and mixed_precision_np2.sh (sourced
# after lib.sh). Runs use --backend mpi: the auto backend's set-up costs ~4 s
# per 2-rank run.
DIFF=$(dirname "$COHORT")/params_diff

run() {  # name np config [--save-params path [more args]]
  local name=$1 np=$2 cfg=$3 save=${4:-$WORK/$1.safetensors}
  shift $(($# < 4 ? $# : 4))
  $MPIRUN -np "$np" "$COHORT" train --config "$cfg" --backend mpi --save-params "$save" "$@" \
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

