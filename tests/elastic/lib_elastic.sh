# Helpers for the elastic tests, on top of tests/cli/lib.sh (source that first).
# NPROC: the workers run_reference and start_job_until_step launch (a test
# may set another count after sourcing this).
NPROC=4

# The value of a top-level JSON field in the last line of FILE.
json_field() { tail -n 1 "$1" | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print(json.dumps(v) if isinstance(v,(list,dict)) else v)"; }

# Python float comparison: within REL relative tolerance? Args: a b rel.
close_to() { python3 -c "import sys; a,b,r=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= r*abs(b) else 1)" "$1" "$2" "$3"; }

# Waits (up to 120 s) until FILE has a progress line at or after step N.
wait_for_step() {
  local file=$1 n=$2 i
  for ((i = 0; i < 1200; ++i)); do
    if awk -v n="$n" '$1 == "step" { split($2, a, "/"); if (a[1] + 0 >= n) found = 1 } END { exit !found }' "$file" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# The pids of the running workers of the launcher under `timeout` with pid $1
# (its grandchildren), in start order.
worker_pids() {
  local l
  for l in $(pgrep -P "$1"); do pgrep -P "$l"; done | sort -n
}

# The fault-free reference: `cohort launch --nproc $NPROC --min 2` of CONFIG to
# $WORK/ref.out and ref.err; fails the test when it fails.
run_reference() {
  timeout 300 "$COHORT" launch --nproc "$NPROC" --min 2 -- "$COHORT" train --config "$1" > "$WORK/ref.out" 2> "$WORK/ref.err" \
    || fail "fault-free run failed: $(tail -5 "$WORK/ref.err")"
}

# The same job in the background to $WORK/el.out and el.err; sets $launcher,
# waits until step N and sets $pids to its $NPROC workers (start order).
start_job_until_step() {
  timeout 300 "$COHORT" launch --nproc "$NPROC" --min 2 -- "$COHORT" train --config "$1" > "$WORK/el.out" 2> "$WORK/el.err" &
  launcher=$!
  wait_for_step "$WORK/el.out" "$2" || fail "no progress to step $2"
  mapfile -t pids < <(worker_pids $launcher)
  ((${#pids[@]} == NPROC)) || fail "expected $NPROC workers, found ${#pids[@]}"
}
