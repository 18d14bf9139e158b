#!/usr/bin/env bash
# Bad input to `cohort launch`: a clear error and a non-zero exit, quickly.
source "$(dirname "$0")/../cli/lib.sh" "$@"
source "$(dirname "$0")/lib_elastic.sh"
small_config "$WORK/c.yaml" 5 128

expect() {
  local name=$1 needle=$2; shift 2
  local start=$SECONDS rc=0
  timeout 120 "$COHORT" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  ((rc == 124)) && { fail "$name: hung"; return; }
  ((rc != 0 && rc < 128)) || fail "$name: exit $rc (want an error)"
  grep -q -- "$needle" "$WORK/err" && pass "$name ($((SECONDS - start)) s, exit $rc): $(grep -m1 'error' "$WORK/err")" \
    || fail "$name: stderr lacks '$needle': $(cat "$WORK/err")"
}
expect "no command after --" "no command to run" launch --nproc 2 --
expect "no command at all" "no command to run" launch --nproc 2
expect "--min above --nproc" "--min 3 must be between 1 and --nproc 2" launch --nproc 2 --min 3 -- true
expect "--max below --nproc" "--max 1 must be at least --nproc 2" launch --nproc 2 --max 1 -- true
expect "--nproc 0" "--nproc must be at least 1" launch --nproc 0 -- true
expect "command not found" "cannot run /nonexistent/cohort-worker" launch --nproc 2 -- /nonexistent/cohort-worker
sed 's/momentum: 0.9/momentun: 0.9/' "$WORK/c.yaml" > "$WORK/typo.yaml"
expect "bad config in the workers" "unknown key 'optimizer.momentun'" launch --nproc 2 -- "$COHORT" train --config "$WORK/typo.yaml"
cat >> "$WORK/tp.yaml" < "$WORK/c.yaml"; printf 'parallel:\n  tensor: 2\n' >> "$WORK/tp.yaml"
expect "tensor parallel refused" "supports data parallelism only" launch --nproc 2 -- "$COHORT" train --config "$WORK/tp.yaml"
finish
