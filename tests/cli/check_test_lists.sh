#!/usr/bin/env bash
# scripts/check-test-lists on hand-made ctest folders: equal non-gpu lists
# pass (gpu tests and excluded names ignored); a test registered in one build
# only fails, and the difference is printed with the folder it is missing from.
source "$(dirname "$0")/lib.sh" "$@"
CHECK=$ROOT/scripts/check-test-lists

fake() {  # dir name:label ...
  local dir=$1; shift
  mkdir -p "$dir"
  : > "$dir/CTestTestfile.cmake"
  for t in "$@"; do
    printf 'add_test(%s "true")\nset_tests_properties(%s PROPERTIES LABELS "%s")\n' "${t%%:*}" "${t%%:*}" "${t#*:}" \
      >> "$dir/CTestTestfile.cmake"
  done
}
expect() {  # name want_rc needle args...
  local name=$1 want=$2 needle=$3; shift 3
  local rc=0
  "$CHECK" "$@" > "$WORK/out" 2>&1 || rc=$?
  if ((rc == want)) && grep -qF -- "$needle" "$WORK/out"; then pass "$name: exit $rc, '$needle'"
  else fail "$name: exit $rc (want $want), output: $(cat "$WORK/out")"; fi
}

fake "$WORK/cuda" core:unit kernels:unit cli_golden:cli bench_R0:mpi kernels_gpu:gpu nccl_np1:gpu
fake "$WORK/cpu" core:unit kernels:unit cli_golden:cli bench_R0:mpi
fake "$WORK/short" core:unit cli_golden:cli bench_R0:mpi extra:unit
fake "$WORK/noR0" core:unit kernels:unit cli_golden:cli

expect "same suite, gpu tests ignored" 0 "register the same 4 non-gpu tests" "$WORK/cuda" "$WORK/cpu"
expect "a test in one build only" 1 "only in $WORK/cuda: kernels" "$WORK/cuda" "$WORK/short"
expect "the other direction printed too" 1 "only in $WORK/short: extra" "$WORK/cuda" "$WORK/short"
expect "without the exclusion the sanitizer's skip shows" 1 "only in $WORK/cpu: bench_R0" "$WORK/cpu" "$WORK/noR0"
expect "excluded names ignored" 0 "register the same 3 non-gpu tests" "$WORK/cpu" "$WORK/noR0" '_R0$'
expect "not a build folder" 2 "not a configured build folder" "$WORK/cpu" "$WORK/nothing"
finish
