#!/usr/bin/env bash
# Cohort on a real one-node Slurm 22.05 cluster (Debian's slurmctld,
# slurmd, slurm-client and munge; started from a slurm.conf in a temp dir).
#   1. examples/slurm/train_mpi.sbatch, reduced: 2 ranks under srun --mpi=pmix
#      train to the end; the summary shows 2 ranks with 1 BLAS thread each
#      (the node has 2 CPUs).
#   2. examples/slurm/train_elastic.sbatch, reduced to the one node: a 3-node
#      coordinator in the allocation and a launcher; the job finishes.
#   3. train_mpi.sbatch with `scontrol requeue` in the middle: the first run
#      stops on SIGTERM with a last committed checkpoint at step K (exit 75),
#      the requeued run resumes from step K and finishes: no step done twice.
#   4. The time-limit warning (SIGUSR1 to the batch script, as --signal=B:USR1
#      sends it): the ranks stop with a checkpoint, the script requeues the
#      job, the next run resumes from it.
# Root only (the daemons run as root): exit 77 (skipped) otherwise.
# Usage: slurm_test.sh COHORT_BINARY SOURCE_DIR
set -uo pipefail
COHORT=$(realpath "$1")
SRC=$(realpath "$2")

if [[ $(id -u) -ne 0 ]]; then
  echo "slurm_test: skipped: needs root (slurmctld and slurmd run as root)"
  exit 77
fi
for tool in munged slurmctld slurmd slurmdbd mariadbd sbatch scontrol squeue sacct; do
  if ! command -v "$tool" >/dev/null; then
    echo "slurm_test: FAIL: $tool not found; run scripts/setup (slurmctld slurmd slurmdbd slurm-client mariadb-server munge)" >&2
    exit 1
  fi
done

source "$SRC/tests/ports.sh"
source "$SRC/tests/slurm/slurm_lib.sh"

WORK=$(mktemp -d /tmp/cohort-slurm.XXXXXX)
chmod 755 "$WORK"
T0=$SECONDS
cleanup() {
  local rc=$?
  if [[ -n ${SLURM_CONF:-} ]]; then
    scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
  fi
  slurm_stop
  if ((rc != 0)); then
    echo "--- logs (kept in $WORK) ---" >&2
    tail -n 30 "$WORK"/log/slurmctld.log "$WORK"/log/slurmd.log "$WORK"/run/*.out >&2 2>/dev/null || true
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "slurm_test: FAIL: $*" >&2
  exit 1
}

slurm_start "$WORK" || fail "the one-node Slurm cluster did not start"
echo "slurm_test: cluster up in $((SECONDS - T0)) s: $(sinfo -h -o '%P %a %D %t %N %c CPUs')"

mkdir -p "$WORK/run"
cd "$WORK/run" || exit 1
# sbatch passes this environment to the jobs (--export=ALL). No
# OPENBLAS_NUM_THREADS: the ranks' BLAS threads come from Slurm's layout.
unset OPENBLAS_NUM_THREADS
export COHORT CONFIG=$SRC/examples/mlp.yaml OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
# wait_done JOBID SECONDS: until the job has left the queue (or fails).
wait_done() {
  local jid=$1 limit=$2 s
  for ((i = 0; i < limit * 2; i++)); do
    s=$(state "$jid")
    case $s in
      COMPLETED) return 0 ;;
      FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        cat "cohort-$jid.out" >&2; fail "job $jid ended $s" ;;
    esac
    sleep 0.5
  done
  cat "cohort-$jid.out" >&2
  fail "job $jid still $s after $limit s"
}
# requeued_and_clean JOBID: the job is pending again and every slurmstepd of
# its last run has exited. Slurm's own hold of a requeued job (a begin time
# about 2 minutes away) waits for that; starting the next run sooner
# (StartTime=now) can race the old step's teardown (its PMIx socket is still
# bound) and fail the new step's launch.
requeued_and_clean() {
  for ((i = 0; i < 120; i++)); do
    [[ $(state "$1") == PENDING ]] && ! pgrep -f "^slurmstepd: \[$1\." >/dev/null && return 0
    sleep 0.5
  done
  fail "job $1: not pending on an idle node 60 s after the requeue"
}
# field JSON_LINE KEY
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }
summaries() { grep '^{' "cohort-$1.out"; }

# --- 1. the MPI job ---
t=$SECONDS
jid=$(STEPS=40 CKPT=$WORK/run/ckpt-mpi CKPT_EVERY=20 sbatch --parsable "$SRC/examples/slurm/train_mpi.sbatch") ||
  fail "sbatch train_mpi.sbatch"
wait_done "$jid" 90
s=$(summaries "$jid" | tail -n 1)
[[ -n $s ]] || fail "job $jid printed no summary"
[[ $(field "$s" world_size) == 2 && $(field "$s" end_step) == 40 && $(field "$s" blas_threads) == 1 ]] ||
  fail "job $jid summary: want world_size 2, end_step 40, blas_threads 1; got $s"
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["final_loss"] < s["initial_loss"], s' "$s" ||
  fail "job $jid: the loss did not go down"
echo "slurm_test: train_mpi.sbatch: job $jid COMPLETED in $((SECONDS - t)) s: 2 ranks, 40 steps, blas_threads 1"

# --- 1b. srun directly, no --cpus-per-task: the case that once went wrong
# (2 ranks on a 2-core node got 2 BLAS threads each); the cores are now divided by the
# ranks srun put on the node (SLURM_STEP_TASKS_PER_NODE). ---
out=$(srun -n 2 --mpi=pmix "$COHORT" train --config "$CONFIG" --steps 5 2>&1) || { echo "$out" >&2; fail "srun -n 2"; }
s=$(grep '^{' <<<"$out" | tail -n 1)
[[ $(field "$s" world_size) == 2 && $(field "$s" blas_threads) == $(($(nproc) / 2 > 0 ? $(nproc) / 2 : 1)) ]] ||
  fail "srun -n 2 --mpi=pmix: want world_size 2, blas_threads $(($(nproc) / 2)); got $s"
echo "slurm_test: srun -n 2 --mpi=pmix cohort train: 2 ranks, blas_threads $(field "$s" blas_threads) on $(nproc) CPUs"

# --- 2. the elastic job, on the one node ---
t=$SECONDS
port=$(python3 -c '
import socket
for base in range(21000, 60000, 7):
    try:
        ss = [socket.socket() for _ in range(3)]
        for i, s in enumerate(ss): s.bind(("127.0.0.1", base + i))
        for s in ss: s.close()
        print(base); break
    except OSError:
        for s in ss: s.close()')
jid=$(STEPS=30 PORT=$port JOBDIR=$WORK/run/elastic sbatch --parsable --nodes=1 \
  "$SRC/examples/slurm/train_elastic.sbatch") || fail "sbatch train_elastic.sbatch"
wait_done "$jid" 120
s=$(summaries "$jid" | tail -n 1)
[[ $(field "$s" elastic) == True && $(field "$s" end_step) == 30 && $(field "$s" world_size) == 2 ]] ||
  fail "job $jid summary: want elastic, end_step 30, world_size 2; got $s"
echo "slurm_test: train_elastic.sbatch: job $jid COMPLETED in $((SECONDS - t)) s: 3 coordinator nodes, 2 workers, 30 steps"

# --- 3. requeue in the middle of a run ---
t=$SECONDS
jid=$(STEPS=300 CKPT=$WORK/run/ckpt-requeue CKPT_EVERY=50 sbatch --parsable "$SRC/examples/slurm/train_mpi.sbatch") ||
  fail "sbatch (requeue)"
for ((i = 0; i < 240; i++)); do  # until it has done some steps (60 s at most)
  grep -qE '^step +([6-9][0-9]|1[0-9][0-9])/' "cohort-$jid.out" 2>/dev/null && break
  sleep 0.25
done
grep -qE '^step' "cohort-$jid.out" || fail "job $jid never started training"
scontrol requeue "$jid" || fail "scontrol requeue $jid"
# Slurm holds a requeued job until a begin time about 2 minutes away; once it
# is pending again, let it start now.
requeued_and_clean "$jid"
scontrol update JobId="$jid" StartTime=now || fail "scontrol update StartTime"
wait_done "$jid" 120
mapfile -t ss < <(summaries "$jid")
((${#ss[@]} == 2)) || fail "job $jid: want 2 summaries (stopped run, resumed run), got ${#ss[@]}"
k=$(field "${ss[0]}" end_step)
[[ $(field "${ss[0]}" stopped_early) == True && $(field "${ss[0]}" stop_signal) == TERM ]] ||
  fail "job $jid: the first run did not stop on SIGTERM: ${ss[0]}"
[[ $(field "${ss[1]}" start_step) == "$k" && $(field "${ss[1]}" end_step) == 300 ]] ||
  fail "job $jid: the requeued run should go from step $k to 300: ${ss[1]}"
grep -q "resumed from $WORK/run/ckpt-requeue/step-$(printf %09d "$k")" "cohort-$jid.out" ||
  fail "job $jid: no resume from the checkpoint at step $k"
grep -q "the ranks exited 75" "cohort-$jid.out" || fail "job $jid: the stopped run did not exit 75"
echo "slurm_test: requeue: job $jid stopped at step $k (SIGTERM, checkpoint committed, exit 75)," \
  "requeued, resumed at step $k, finished at 300 in $((SECONDS - t)) s"

# --- 4. the time-limit warning: SIGUSR1 to the batch script alone, as
# --signal=B:USR1@120 sends it; the script passes it on, and requeues the job
# itself when the ranks stopped (exit 75). ---
t=$SECONDS
jid2=$(STEPS=300 CKPT=$WORK/run/ckpt-usr1 CKPT_EVERY=50 sbatch --parsable "$SRC/examples/slurm/train_mpi.sbatch") ||
  fail "sbatch (usr1)"
for ((i = 0; i < 240; i++)); do
  grep -qE '^step +([6-9][0-9]|1[0-9][0-9])/' "cohort-$jid2.out" 2>/dev/null && break
  sleep 0.25
done
scancel --batch --signal=USR1 "$jid2" || fail "scancel --batch --signal=USR1 $jid2"
requeued_and_clean "$jid2"
grep -q "job $jid2: requeued to continue" "cohort-$jid2.out" || { cat "cohort-$jid2.out" >&2; fail "job $jid2 did not requeue itself"; }
scontrol update JobId="$jid2" StartTime=now || fail "scontrol update StartTime"
wait_done "$jid2" 120
mapfile -t ss < <(summaries "$jid2")
((${#ss[@]} == 2)) || fail "job $jid2: want 2 summaries, got ${#ss[@]}"
k=$(field "${ss[0]}" end_step)
[[ $(field "${ss[0]}" stop_signal) == USR1 && $(field "${ss[1]}" start_step) == "$k" &&
  $(field "${ss[1]}" end_step) == 300 ]] || fail "job $jid2: want a USR1 stop at K and a resume from K: ${ss[*]}"
echo "slurm_test: time-limit warning: job $jid2 stopped at step $k (SIGUSR1), requeued itself, resumed at $k," \
  "finished at 300 in $((SECONDS - t)) s"

echo "slurm_test: Slurm's accounting of the jobs (sacct):"
for ((i = 0; i < 50; i++)); do  # slurmctld sends the records to slurmdbd a little later
  [[ $(sacct -a -n -X -s CD -o JobID | wc -l) -ge 4 ]] && break
  sleep 0.2
done
sacct -a -D -o JobID%-14,JobName%-18,State%-12,ExitCode,DerivedExitCode%-8,Start,Elapsed,NCPUS
[[ $(sacct -a -n -X -D -o State | grep -c COMPLETED) -ge 4 ]] || fail "sacct does not show the 4 jobs COMPLETED"
[[ $(sacct -a -n -X -D -j "$jid" -o State | grep -c REQUEUED) -ge 1 ]] || fail "sacct does not show job $jid REQUEUED"
echo "slurm_test: PASS in $((SECONDS - T0)) s"
