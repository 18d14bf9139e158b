#!/usr/bin/python3
"""Fashion-MNIST end to end: Cohort's examples/fashion_mnist.yaml against the
same recipe in PyTorch (bench/torch_fashion_mnist.py), in one run.

Four trainings of MLP 784-1024-1024-10 (ReLU), AdamW lr 1e-3 wd 0.01, 10%
warm-up + cosine to 0, global batch 256, 5 epochs (1,170 steps), test accuracy
over the 10,000 test images:
  cohort 1 rank (one BLAS thread), pytorch 1 process (one thread),
  cohort 2 ranks (mpirun, one BLAS thread each), pytorch DDP gloo 2 processes,
run interleaved in that order (each pair back to back), --repeats times; the
table shows medians. samples/s is training only, from each run's own summary
(Cohort: train_s; PyTorch: the timed steps, no evaluation); wall is start to
finished run as seen from here (mpirun / python start-up, data loading and the
five evaluations included). Cohort runs a copy of the config without its
checkpoint section. Both seed their own data order: the same scheme (a seeded
permutation per epoch, the last 96 images unused), different permutations;
PyTorch keeps its default init.

  /usr/bin/python3 bench/fashion_mnist_vs_torch.py [--cohort build/bin/cohort] [--repeats 1]
      [--json out.json] [--history curves.jsonl] [--quick]

--history writes the --history of (the first) Cohort 2-rank run, for
  /usr/bin/python3 bench/plot_train.py curves.jsonl -o docs/fashion_mnist_curves.png
--quick: 234 steps (one epoch; warm-up 117, cosine to 0 at 234) of each, < 60 s.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "--mca", "btl", "self,vader", "-x", "OPENBLAS_NUM_THREADS=1"]
ENV1 = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
GOAL_ACC = 0.89        # the test accuracy Cohort aims for
GOAL_MARGIN = 0.005    # Cohort >= PyTorch - 0.5 points


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


def run(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV1)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}")
    res = last_json(p.stdout)
    res["bench_wall_s"] = wall
    res["command"] = " ".join(cmd)
    return res


def read_recipe(path):
    """The numbers the PyTorch peer must share with the YAML (checked, not assumed)."""
    import yaml
    with open(path) as f:
        c = yaml.safe_load(f)
    t, o = c["train"], c["optimizer"]
    ls = t["lr_schedule"]
    assert c["model"] == {"layers": [784, 1024, 1024, 10], "activation": "relu"}, c["model"]
    assert o["type"] == "adamw" and ls["decay"] == "cosine" and ls.get("min_lr", 0) == 0, (o, ls)
    return {"steps": t["steps"], "warmup": ls["warmup_steps"], "global_batch": t["global_batch"],
            "lr": o["lr"], "weight_decay": o["weight_decay"], "eval_every": t["eval_every"],
            "seed": c["seed"], "data": c["data"]["path"]}


def config_without_checkpoint(src, dst):
    with open(src) as f:
        lines = [l for l in f if not l.startswith("checkpoint:")]
    if any("checkpoint" in l.split("#")[0] for l in lines):
        raise RuntimeError(f"{src}: a checkpoint section this script cannot drop")
    with open(dst, "w") as f:
        f.writelines(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", default=os.path.join(ROOT, "build", "bin", "cohort"))
    p.add_argument("--config", default=os.path.join(ROOT, "examples", "fashion_mnist.yaml"))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="one epoch (234 steps) of each: a smoke run")
    p.add_argument("--json", help="write every figure and command here")
    p.add_argument("--history", help="copy the first Cohort 2-rank run's --history here")
    args = p.parse_args()

    r = read_recipe(args.config)
    steps = 234 if args.quick else r["steps"]
    tmp = tempfile.mkdtemp(prefix="fmnist_bench_")
    try:
        cfg = os.path.join(tmp, "fashion_mnist.yaml")
        config_without_checkpoint(args.config, cfg)
        hist = os.path.join(tmp, "curves.jsonl")
        cohort_cmd = [args.cohort, "train", "--config", cfg, "--threads", "1"]
        if args.quick:
            cohort_cmd += ["--steps", str(steps)]
        torch_cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", "torch_fashion_mnist.py"),
                     "--steps", str(steps), "--warmup", str(r["warmup"]), "--global-batch", str(r["global_batch"]),
                     "--lr", str(r["lr"]), "--weight-decay", str(r["weight_decay"]),
                     "--eval-every", str(r["eval_every"]), "--seed", str(r["seed"]), "--data", r["data"]]
        cmds = {"cohort1": MPIRUN + ["-np", "1"] + cohort_cmd,
                "torch1": torch_cmd + ["--world", "1"],
                "cohort2": MPIRUN + ["-np", "2"] + cohort_cmd + ["--history", hist],
                "torch2": torch_cmd + ["--world", "2"]}
        runs = {k: [] for k in cmds}
        for i in range(args.repeats):
            for k, cmd in cmds.items():
                print(f"round {i + 1}/{args.repeats}: {k} ...", file=sys.stderr, flush=True)
                runs[k].append(run(cmd))
                if k == "cohort2" and i == 0 and args.history:
                    shutil.copyfile(hist, args.history)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(k, f):
        return statistics.median(x[f] for x in runs[k])

    names = {"cohort1": "Cohort, 1 rank (1 BLAS thread)", "torch1": "PyTorch, 1 process (1 thread)",
             "cohort2": "Cohort, 2 ranks (mpirun)", "torch2": "PyTorch DDP gloo, 2 processes"}
    epochs = steps / (60000 // r["global_batch"])  # 234 steps an epoch, the last 96 images unused
    print(f"\nFashion-MNIST, MLP 784-1024-1024-10, AdamW, global batch 256, {steps} steps ({epochs:.2f} epochs), "
          f"{'median of ' + str(args.repeats) + ' interleaved runs' if args.repeats > 1 else 'one run each'}\n")
    print(f"{'':32}  {'test acc':>8}  {'samples/s':>9}  {'train s':>7}  {'wall s':>6}")
    for k in ["cohort1", "cohort2", "torch1", "torch2"]:
        print(f"{names[k]:32}  {100 * med(k, 'eval_accuracy'):>7.2f}%  {med(k, 'samples_per_s'):>9.0f}  "
              f"{med(k, 'train_s'):>7.1f}  {med(k, 'bench_wall_s'):>6.1f}")
    ratio1 = med("cohort1", "samples_per_s") / med("torch1", "samples_per_s")
    ratio2 = med("cohort2", "samples_per_s") / med("torch2", "samples_per_s")
    print(f"\nsamples/s  Cohort 1 rank / PyTorch 1 thread: {ratio1:.2f}x   "
          f"Cohort 2 ranks / DDP gloo 2: {ratio2:.2f}x")
    print(f"wall       Cohort 1 rank / PyTorch 1 thread: {med('cohort1', 'bench_wall_s') / med('torch1', 'bench_wall_s'):.2f}   "
          f"Cohort 2 ranks / DDP gloo 2: {med('cohort2', 'bench_wall_s') / med('torch2', 'bench_wall_s'):.2f}")
    best_torch = max(med("torch1", "eval_accuracy"), med("torch2", "eval_accuracy"))
    goals = {}
    for k in ["cohort1", "cohort2"]:
        a = med(k, "eval_accuracy")
        goals[k] = {"vs_pytorch": a >= best_torch - GOAL_MARGIN, "89": a >= GOAL_ACC}
        print(f"goal {names[k]}: {100 * a:.2f}% vs best PyTorch {100 * best_torch:.2f}% - 0.5 -> "
              f"{'met' if goals[k]['vs_pytorch'] else 'MISSED'}; 89%+ -> {'met' if goals[k]['89'] else 'MISSED'}"
              f"{' (--quick: 1 epoch, not the goal run)' if args.quick else ''}")
    print("\ncommands:")
    for k, c in cmds.items():
        print(f"  {k}: {' '.join(c)}")
    if args.json:
        medians = {k: {f: med(k, f) for f in ["eval_accuracy", "samples_per_s", "train_s", "bench_wall_s"]}
                   for k in runs}
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "steps": steps, "repeats": args.repeats, "recipe": r,
                       "commands": {k: " ".join(c) for k, c in cmds.items()}, "medians": medians,
                       "ratios": {"samples_per_s_cohort1_over_torch1": ratio1,
                                  "samples_per_s_cohort2_over_torch2": ratio2},
                       "goals": goals, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
