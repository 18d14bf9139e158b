#!/usr/bin/env bash
# Bad input under mpirun with 2 ranks: each case gives exactly one clear error
# line naming the problem, a non-zero exit on every rank, no hang, no core dump.
source "$(dirname "$0")/lib.sh" "$@"

# Runs `cohort train ARGS` on 2 ranks (or an MPMD line given as $MPMD); each
# rank records its own exit status. mpirun must not kill the others on the
# first failure here, or a slow rank's status would be lost.
expect_error() {
  local name=$1 needle=$2; shift 2
  rm -f "$WORK"/rc.*
  local wrap="\"$COHORT\" train \"\$@\"; rc=\$?; echo \$rc > $WORK/rc.\$OMPI_COMM_WORLD_RANK; exit \$rc"
  local start=$SECONDS
  if [[ -n ${MPMD:-} ]]; then
    timeout 120 $MPIRUN --mca orte_abort_on_non_zero_status 0 -np 1 sh -c "$wrap" sh --config "$MPMD_A" : \
      -np 1 sh -c "$wrap" sh --config "$MPMD_B" > "$WORK/out" 2> "$WORK/err"
  else
    timeout 120 $MPIRUN --mca orte_abort_on_non_zero_status 0 -np 2 sh -c "$wrap" sh "$@" > "$WORK/out" 2> "$WORK/err"
  fi
  local rc=$?
  ((rc == 124)) && { fail "$name: hung (killed after 120 s)"; return; }
  local n
  for r in 0 1; do
    [[ -f $WORK/rc.$r ]] || { fail "$name: rank $r left no exit status"; continue; }
    n=$(cat "$WORK/rc.$r")
    ((n != 0 && n < 128)) || fail "$name: rank $r exited $n (want 1..127: an error, not a crash)"
  done
  grep -qiE "core dumped|segmentation|abort" "$WORK/err" && fail "$name: crashed: $(head -3 "$WORK/err")"
  local lines
  lines=$(grep -c "cohort train: error:" "$WORK/err" || true)
  ((lines == 1)) || fail "$name: $lines error lines (want 1): $(cat "$WORK/err")"
  grep -q -- "$needle" "$WORK/err" && pass "$name ($((SECONDS - start)) s): $(grep 'cohort train: error:' "$WORK/err")" \
    || fail "$name: message lacks '$needle': $(cat "$WORK/err")"
}

small_config "$WORK/good.yaml" 5 128

sed 's/momentum: 0.9/momentun: 0.9/' "$WORK/good.yaml" > "$WORK/typo.yaml"
expect_error "mistyped key" "unknown key 'optimizer.momentun' (did you mean 'optimizer.momentum'?)" --config "$WORK/typo.yaml"

sed 's/steps: 5/steps: five/' "$WORK/good.yaml" > "$WORK/type.yaml"
expect_error "wrong value type" "'train.steps' must be an integer" --config "$WORK/type.yaml"

expect_error "missing config file" "config file not found: $WORK/nope.yaml" --config "$WORK/nope.yaml"

sed 's/global_batch: 128/global_batch: 127/' "$WORK/good.yaml" > "$WORK/batch.yaml"
expect_error "batch does not divide" "global_batch 127 does not divide over 2 data-parallel ranks" --config "$WORK/batch.yaml"

"$COHORT" data gen --out "$WORK/ds3" --samples 3072 --shards 3 --seed 3 > /dev/null
sed "s|source: synthetic|source: shards|; s|samples: 4096|path: $WORK/ds3|" "$WORK/good.yaml" > "$WORK/ds3.yaml"
expect_error "shards do not divide" "has 3 shards, which do not divide over 2 ranks" --config "$WORK/ds3.yaml"

"$COHORT" data gen --out "$WORK/ds" --samples 4096 --shards 4 --seed 3 > /dev/null
sed "s|source: synthetic|source: shards|; s|samples: 4096|path: $WORK/ds|" "$WORK/good.yaml" > "$WORK/ds.yaml"
cp -r "$WORK/ds" "$WORK/ds.orig"
# Shard 3 belongs to rank 1: the error must still reach rank 0's single line.
rm "$WORK/ds/shard-00003-of-00004.cds"
expect_error "missing shard" "data shard missing: $WORK/ds/shard-00003-of-00004.cds" --config "$WORK/ds.yaml"

rm -rf "$WORK/ds"; cp -r "$WORK/ds.orig" "$WORK/ds"
truncate -s -1000 "$WORK/ds/shard-00001-of-00004.cds"
expect_error "truncated shard" "shard-00001-of-00004.cds is truncated" --config "$WORK/ds.yaml"

rm -rf "$WORK/ds"; cp -r "$WORK/ds.orig" "$WORK/ds"
printf '\xff' | dd of="$WORK/ds/shard-00002-of-00004.cds" bs=1 seek=9000 conv=notrunc status=none
expect_error "corrupted shard" "shard-00002-of-00004.cds is corrupted: payload checksum mismatch" --config "$WORK/ds.yaml"

cp "$WORK/good.yaml" "$WORK/tp3.yaml"; printf 'parallel:\n  tensor: 3\n' >> "$WORK/tp3.yaml"
expect_error "tensor size does not divide the world" "parallel.tensor 3 does not divide the world of 2 ranks" --config "$WORK/tp3.yaml"

sed 's/\[784, 128, 128, 10\]/[784, 127, 128, 10]/' "$WORK/good.yaml" > "$WORK/tp2.yaml"; printf 'parallel:\n  tensor: 2\n' >> "$WORK/tp2.yaml"
expect_error "tensor size does not divide the layers" "parallel.tensor 2 does not divide the width 127 of hidden layer 1" --config "$WORK/tp2.yaml"

sed 's/lr: 0.05/lr: 0.06/' "$WORK/good.yaml" > "$WORK/other.yaml"
MPMD=1 MPMD_A="$WORK/good.yaml" MPMD_B="$WORK/other.yaml" \
  expect_error "ranks with different configs" "ranks started with different configs" 

# Devices (train.device / --device).
sed '/log_every/a\  device: gpu' "$WORK/good.yaml" > "$WORK/dev.yaml"
expect_error "unknown train.device" "'train.device' must be cpu, cuda or auto, not 'gpu'" --config "$WORK/dev.yaml"
expect_error "nccl on the CPU" "backend nccl runs on GPU buffers but device is cpu" --config "$WORK/good.yaml" --backend nccl
expect_error "cuda with a CPU backend" "with device cuda the trainer's buffers live on the GPU" \
  --config "$WORK/good.yaml" --device cuda --backend shm
if ! nvidia-smi -L > /dev/null 2>&1; then  # here: no GPU (this build with or without CUDA)
  expect_error "cuda without a GPU" "device cuda: " --config "$WORK/good.yaml" --device cuda
fi

# The plain mpirun (abort on the first failure, as users run it) exits non-zero too.
if $MPIRUN -np 2 "$COHORT" train --config "$WORK/typo.yaml" > /dev/null 2>&1; then
  fail "mpirun exited 0 although every rank failed"
else
  pass "mpirun exits non-zero"
fi
finish
