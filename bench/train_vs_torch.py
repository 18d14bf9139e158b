#!/usr/bin/python3
"""Training throughput: Cohort against PyTorch in one run, interleaved.

Same model (784-1024-1024-10), batch 128 per rank, SGD with momentum, one
BLAS/intra-op thread per process. Each configuration runs --repeats times,
interleaved (cohort 1, torch 1, cohort 2, torch DDP 2, 2 independent cohort
processes); the table shows medians and the ratio Cohort / PyTorch.

  /usr/bin/python3 bench/train_vs_torch.py [--cohort build/bin/cohort] [--steps 200] [--repeats 3] [--json out.json]

Cohort's step includes generating its synthetic batch (about 1 ms); PyTorch's
batches are prepared before the clock starts.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "--mca", "btl", "self,vader", "-x", "OPENBLAS_NUM_THREADS=1"]


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def cohort(args, np_):
    out = run(MPIRUN + ["-np", str(np_), args.cohort, "train", "--config", args.config, "--steps", str(args.steps)])
    return last_json(out)


def cohort_independent(args):
    """Two 1-rank jobs at once: the ceiling for 2 ranks (no communication)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    procs = [subprocess.Popen(MPIRUN + ["-np", "1", args.cohort, "train", "--config", args.config,
                                        "--steps", str(args.steps)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    total = 0.0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err[-3000:])
        total += last_json(out)["samples_per_s"]
    return {"samples_per_s": total}


def torch(args, world):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = run(["/usr/bin/python3", os.path.join(ROOT, "bench", "torch_mlp.py"), "--world", str(world),
               "--steps", str(args.steps)], env=env)
    return last_json(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", default=os.path.join(ROOT, "build", "bin", "cohort"))
    p.add_argument("--config", default=os.path.join(ROOT, "examples", "mlp.yaml"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write all runs and medians here")
    args = p.parse_args()

    runs = {k: [] for k in ["cohort1", "torch1", "cohort2", "torch2", "independent2"]}
    for r in range(args.repeats):
        print(f"round {r + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
        runs["cohort1"].append(cohort(args, 1))
        runs["torch1"].append(torch(args, 1))
        runs["cohort2"].append(cohort(args, 2))
        runs["torch2"].append(torch(args, 2))
        runs["independent2"].append(cohort_independent(args))

    med = {k: statistics.median(x["samples_per_s"] for x in v) for k, v in runs.items()}
    share2 = statistics.median(x["allreduce_share"] for x in runs["cohort2"])
    ar_ms = statistics.median(x["allreduce_ms"] for x in runs["cohort2"])
    step2 = statistics.median(x["step_ms"] for x in runs["cohort2"])
    data2 = statistics.median(x["data_ms"] for x in runs["cohort2"])
    print(f"\nMLP 784-1024-1024-10, batch 128/rank, SGD momentum, {args.steps} steps, "
          f"median of {args.repeats} interleaved runs (samples/s)\n")
    print(f"{'ranks':>5}  {'cohort':>10}  {'pytorch':>10}  {'cohort/pytorch':>14}  note")
    print(f"{1:>5}  {med['cohort1']:>10.0f}  {med['torch1']:>10.0f}  {med['cohort1'] / med['torch1']:>14.2f}  "
          f"pytorch: 1 thread")
    print(f"{2:>5}  {med['cohort2']:>10.0f}  {med['torch2']:>10.0f}  {med['cohort2'] / med['torch2']:>14.2f}  "
          f"cohort: mpi; pytorch: DDP gloo")
    print(f"\ncohort 2 ranks: step {step2:.2f} ms, of which all-reduce {ar_ms:.2f} ms ({100 * share2:.1f}%), "
          f"data {data2:.2f} ms")
    print(f"2 independent 1-rank processes (no communication, the ceiling): {med['independent2']:.0f} samples/s; "
          f"cohort 2 ranks reach {100 * med['cohort2'] / med['independent2']:.0f}% of it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"medians": med, "allreduce_share_2": share2, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
