#!/usr/bin/env bash
# auto's calibration cache end to end: the first `cohort train --backend
# auto` on 2 ranks measures and writes the table under $COHORT_CACHE_DIR; the
# second reads it; a damaged file is measured again with a warning and
# rewritten; --recalibrate measures even with a valid file. Both runs train
# to a finite loss either way.
source "$(dirname "$0")/lib.sh" "$@"
export COHORT_CACHE_DIR=$WORK/cache
small_config "$WORK/c.yaml" 5 128
run() {  # run NAME [flags...]: train on 2 ranks, rank logs at info on stderr
  local name=$1
  shift
  $MPIRUN -np 2 -x COHORT_CACHE_DIR "$COHORT" train --config "$WORK/c.yaml" --backend auto --log-level info "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.err" || { cat "$WORK/$name.err" >&2; fail "$name: train failed"; }
  tail -1 "$WORK/$name.out" | grep -q '"final_loss"' || fail "$name: no summary"
}
run first
files=("$COHORT_CACHE_DIR"/auto-*.json)
[[ ${#files[@]} == 1 && -f ${files[0]} ]] && pass "first start wrote one cache file" || fail "cache files: ${files[*]}"
grep -q "calibrated in" "$WORK/first.err" && pass "first start measured" || fail "first start: $(grep auto "$WORK/first.err")"
run second
grep -q "read from $COHORT_CACHE_DIR/auto-" "$WORK/second.err" && pass "second start read the cache" \
  || fail "second start: $(grep 'auto backend' "$WORK/second.err")"
grep -q "calibrated in" "$WORK/second.err" && fail "second start measured again"
# A torn file: measured again, with a warning naming the file; then rewritten.
head -c 100 "${files[0]}" > "$WORK/torn" && cp "$WORK/torn" "${files[0]}"
run torn
grep -q "not using the calibration cache ${files[0]}" "$WORK/torn.err" && pass "a damaged cache is named and skipped" \
  || fail "torn: $(grep auto "$WORK/torn.err" | head -3)"
grep -q "calibrated in" "$WORK/torn.err" && pass "a damaged cache is measured again" || fail "torn: not measured"
run after_torn
grep -q "read from" "$WORK/after_torn.err" && pass "the rewritten cache is read" || fail "after torn: not read"
run recal --recalibrate
grep -q "calibrated in" "$WORK/recal.err" && pass "--recalibrate measures" || fail "--recalibrate did not measure"
finish
