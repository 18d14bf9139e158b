#!/usr/bin/python3
"""GPT training throughput: Cohort against PyTorch eager, in one run, interleaved.

  /usr/bin/python3 bench/gpt_vs_torch.py [--cohort build/bin/cohort] [--repeats 3] [--warmup 2] [--steps 6]
                                         [--models a,b] [--parallel-models b] [--json out.json] [--quick]

About 5 minutes on 2 idle cores; --parallel-models a,b adds about 3 more.

GPT-2 architecture (nanoGPT's: pre-LayerNorm blocks, fused QKV, GELU tanh,
tied head, biases), fp32, AdamW (lr 3e-4, betas 0.9/0.99, weight decay 0.1,
gradient clipping at 1.0), random byte tokens (vocab 256), one BLAS thread per
process (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1), cohort --threads 1):
  (a) 6 layers / 6 heads / width 384 / context 256 / batch 8  (10.8 M parameters)
  (b) 4 layers / 4 heads / width 256 / context 128 / batch 16 (3.3 M parameters)

Each round runs, in this order: the one-core GEMM rate; per model, Cohort on
one rank then PyTorch in one process; per --parallel-models model, Cohort data
parallel on 2 ranks (mpirun, --backend shm, batch per rank as above), PyTorch
DDP over Gloo on 2 processes, Cohort tensor parallel 2 (same global batch as
one rank). The table shows medians over --repeats rounds.

Every run trains --warmup + --steps steps; throughput is the median per-step
time of the steps after the warm-up (Cohort: its --history with log_every 1,
rank 0; PyTorch: perf_counter around each step, rank 0). Peak RSS is the
ru_maxrss of a fresh child process per run (os.wait4; for mpirun and DDP the
largest rank). Cohort's forward/backward/optimizer split comes from its
summary line and averages every step, warm-up included. The "others" column
CPU column is the CPU time a run got over wall time x its processes (start-up
included): on a shared machine, a run's figures are only as good as it is
close to 100%. The JSON also has "other_load", the share of the machine's
cores other processes kept busy meanwhile (/proc/stat); the script warns when
they took cores a run needed.

FLOPs per step (the table's "% GEMM": achieved FLOP/s over the fp32 GEMM rate
OpenBLAS reaches on one core, 2048x384 @ 384x1536, best of numpy and torch):
  6 * N * B*T  +  6 * L * B * T^2 * C
where N = parameters less the position table (the token table is counted
once, as the tied head's GEMM; lookups are free) and the second term is
attention's two (T x T) products, 12 * L * B * T^2 * C for forward + backward,
halved for the causal mask. PyTorch computes the full T x T; the formula does
not credit it for that.

--quick: tiny models, 1 round, a handful of steps; a smoke test (< 60 s).
"""
import argparse
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/CMakeLists.txt's COHORT_MPIRUN.
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "--mca", "btl", "self,vader", "-x", "OPENBLAS_NUM_THREADS=1"]
VOCAB = 256
MODELS = {
    "a": dict(layers=6, heads=6, width=384, context=256, batch=8),
    "b": dict(layers=4, heads=4, width=256, context=128, batch=16),
}
QUICK_MODELS = {
    "a": dict(layers=2, heads=2, width=64, context=64, batch=4),
    "b": dict(layers=2, heads=2, width=32, context=32, batch=8),
}
LR, BETA1, BETA2, EPS, WD, CLIP, INIT_STD = 3e-4, 0.9, 0.99, 1e-8, 0.1, 1.0, 0.02
GEMM_MKN = (2048, 384, 1536)
RUN_TIMEOUT_S = 900


def one_thread_env():
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def describe(m):
    return f"{m['layers']}L {m['heads']}H w{m['width']} T{m['context']} B{m['batch']}"


def param_count(m):
    C, L, T = m["width"], m["layers"], m["context"]
    # wte + wpe + per block (ln 2C, qkv 3C^2+3C, proj C^2+C, ln 2C, fc 4C^2+4C, mproj 4C^2+C) + ln_f
    return VOCAB * C + T * C + L * (12 * C * C + 13 * C) + 2 * C


def flops_per_step(m, batch):
    C, L, T = m["width"], m["layers"], m["context"]
    n = param_count(m) - T * C
    return 6 * n * batch * T + 6 * L * batch * T * T * C


# ---------------------------------------------------------------------------
# Child processes, each measured on its own: exit status, output, peak RSS.

def busy_cpu_s():
    """CPU seconds the whole machine has spent busy since boot (/proc/stat; 0 where unreadable)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class Child:
    def __init__(self, cmd, env):
        self.cmd = cmd
        self.out = tempfile.TemporaryFile(mode="w+")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.start = time.monotonic()
        self.busy_start = busy_cpu_s()
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, env=env)

    def wait(self, timeout_s=RUN_TIMEOUT_S):
        """Waits with os.wait4 (the child's own rusage, its waited-for descendants included).
        Returns (stdout, peak RSS in bytes of the largest process, CPU seconds, wall seconds,
        CPU seconds the whole machine was busy meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                pid, status, ru = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.02)
        wall_s = time.monotonic() - self.start
        busy_s = busy_cpu_s() - self.busy_start
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.out.seek(0)
        self.err.seek(0)
        out, err = self.out.read(), self.err.read()
        if self.proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} failed ({self.proc.returncode}):\n{err[-3000:]}\n{out[-1000:]}")
        return out, ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime, wall_s, busy_s


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


# ---------------------------------------------------------------------------
# Cohort.

def write_tokens(path, n, seed):
    import numpy as np
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, n
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.random.default_rng(seed).integers(0, VOCAB, n).astype(np.uint16).tobytes())


def cohort_config(work, name, m, steps, batch_key, batch, tensor=1):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""seed: 1
model: {{type: gpt, vocab: {VOCAB}, context: {m['context']}, layers: {m['layers']}, heads: {m['heads']}, width: {m['width']}}}
optimizer: {{type: adamw, lr: {LR}, beta1: {BETA1}, beta2: {BETA2}, eps: {EPS}, weight_decay: {WD}}}
train: {{steps: {steps}, {batch_key}: {batch}, log_every: 1, clip_grad_norm: {CLIP}}}
data: {{source: tokens, path: {work}/tokens}}
parallel: {{tensor: {tensor}, zero: 0}}
""")
    return path


def cohort_run(args, work, name, m, ranks, tensor=1):
    """One `cohort train`; returns the summary, steady-state figures and the command."""
    steps = args.warmup + args.steps
    if tensor > 1:  # one data-parallel rank: the same global batch as one rank
        cfg = cohort_config(work, name, m, steps, "global_batch", m["batch"], tensor)
    else:
        cfg = cohort_config(work, name, m, steps, "batch_per_rank", m["batch"])
    history = os.path.join(work, name + ".history.jsonl")
    if os.path.exists(history):
        os.remove(history)
    cmd = [args.cohort, "train", "--config", cfg, "--threads", "1", "--history", history]
    if ranks > 1:
        cmd = MPIRUN + ["-np", str(ranks)] + cmd + ["--backend", args.backend]
    out, rss, cpu_s, wall_s, busy_s = Child(cmd, one_thread_env()).wait()
    summary = last_json(out)
    with open(history) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    step_ms = [r["step_ms"] for r in rows if "step_ms" in r and r["step"] > args.warmup]
    if not step_ms:
        raise RuntimeError(f"{name}: no step after the warm-up in {history}")
    med = statistics.median(step_ms)
    tokens = summary["global_batch"] * m["context"]
    return {"cmd": cmd, "config": open(cfg).read(), "summary": summary, "step_ms_steady": step_ms,
            "step_ms": med, "tokens_per_step": tokens, "tokens_per_s": tokens * 1e3 / med,
            "peak_rss_bytes": rss,
            "cpu_got": cpu_s / (wall_s * ranks), "wall_s": wall_s, "processes": ranks,
            "other_load": other_load(cpu_s, wall_s, busy_s)}


# ---------------------------------------------------------------------------
# PyTorch: the worker runs in its own process (--torch-worker); world 2 is two
# such processes joined over Gloo (tcp://127.0.0.1; torchrun is broken here).

def other_load(own_cpu_s, wall_s, busy_s):
    """The share of the machine's cores that other processes used during a run."""
    return max(0.0, busy_s - own_cpu_s) / (wall_s * os.cpu_count())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_run(args, m, world):
    spec = dict(m, steps=args.warmup + args.steps, warmup=args.warmup, world=world)
    port = free_port() if world > 1 else 0
    cmds = [["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker",
             json.dumps(dict(spec, rank=r, init=f"tcp://127.0.0.1:{port}"))] for r in range(world)]
    children = [Child(c, one_thread_env()) for c in cmds]
    results = [c.wait() for c in children]
    res = last_json(results[0][0])
    res["peak_rss_bytes"] = max(r[1] for r in results)
    res["cpu_got"] = sum(r[2] for r in results) / sum(r[3] for r in results)
    res["wall_s"] = max(r[3] for r in results)
    res["processes"] = world
    res["other_load"] = other_load(sum(r[2] for r in results), max(r[3] for r in results),
                                   max(r[4] for r in results))
    res["cmd"] = cmds[0]
    res["tokens_per_step"] = m["batch"] * world * m["context"]
    res["tokens_per_s"] = res["tokens_per_step"] * 1e3 / res["step_ms"]
    return res


def torch_worker(spec):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(1)
    L, NH, C, T, B = spec["layers"], spec["heads"], spec["width"], spec["context"], spec["batch"]
    rank, world = spec["rank"], spec["world"]

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            # A plain attribute, not a buffer: Gloo cannot broadcast bool buffers (DDP's start).
            self.mask = torch.tril(torch.ones(T, T, dtype=torch.bool))

        def forward(self, x):
            b, t, c = x.size()
            q, k, v = self.c_attn(x).split(c, dim=2)
            q = q.view(b, t, NH, c // NH).transpose(1, 2)
            k = k.view(b, t, NH, c // NH).transpose(1, 2)
            v = v.view(b, t, NH, c // NH).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // NH))
            att = F.softmax(att.masked_fill(~self.mask[:t, :t], float("-inf")), dim=-1)
            return self.c_proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.c_fc, self.c_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, C), nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)
            for name, p in self.named_parameters():  # nanoGPT's GPT-2 init
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, 0.0, INIT_STD / math.sqrt(2 * L))
                elif name.endswith("bias") and "ln" not in name:
                    nn.init.zeros_(p)
                elif p.dim() == 2:
                    nn.init.normal_(p, 0.0, INIT_STD)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
            return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))

    torch.manual_seed(1)
    model = GPT()
    params = sum(p.numel() for p in model.parameters())
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method=spec["init"], rank=rank, world_size=world)
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS, weight_decay=WD)
    g = torch.Generator().manual_seed(rank)
    windows = [torch.randint(0, VOCAB, (B, T + 1), generator=g) for _ in range(4)]
    pool = [(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in windows]  # prepared before the clock

    step_ms, fwd_ms, bwd_ms, opt_ms = [], [], [], []
    for i in range(spec["steps"]):
        x, y = pool[i % len(pool)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        t1 = time.perf_counter()
        loss.backward()  # DDP: the all-reduce runs inside
        t2 = time.perf_counter()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        t3 = time.perf_counter()
        if i >= spec["warmup"]:
            step_ms.append((t3 - t0) * 1e3)
            fwd_ms.append((t1 - t0) * 1e3)
            bwd_ms.append((t2 - t1) * 1e3)
            opt_ms.append((t3 - t2) * 1e3)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    med = statistics.median
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "world_size": world, "params": params,
                      "step_ms": med(step_ms), "forward_ms": med(fwd_ms), "backward_ms": med(bwd_ms),
                      "optimizer_ms": med(opt_ms), "step_ms_steady": step_ms, "final_loss": loss.item()}))


# ---------------------------------------------------------------------------
# The one-core fp32 GEMM rate (OpenBLAS through numpy and through torch).

def gemm_worker(reps):
    import numpy as np
    import torch
    torch.set_num_threads(1)
    M, K, N = GEMM_MKN
    flop = 2.0 * M * K * N
    out = {}
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for name, fn in [("numpy", lambda: a @ b), ("torch", lambda: torch.mm(ta, tb))]:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name + "_gflops"] = flop / min(times) / 1e9  # best: the rate the core can reach
    print(json.dumps(out))


def gemm_rate(reps):
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--gemm-worker", str(reps)]
    out = Child(cmd, one_thread_env()).wait()[0]
    return last_json(out)


# ---------------------------------------------------------------------------

def machine():
    info = {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        info["torch"] = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"],
                                       capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["torch"] = None
    info["loadavg_start"] = os.getloadavg()
    return info


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", default=os.path.join(ROOT, "build", "bin", "cohort"))
    p.add_argument("--repeats", type=int, help="interleaved rounds (default 3; --quick 1)")
    p.add_argument("--warmup", type=int, help="steps not timed at the start of each run (default 2; --quick 1)")
    p.add_argument("--steps", type=int, help="timed steps per run (default 6; --quick 3)")
    p.add_argument("--models", default="a,b", help="models run on one rank: a,b, a or b")
    p.add_argument("--parallel-models", default="b",
                   help="models run on 2 ranks (each also runs on one rank): b, a,b or none")
    p.add_argument("--backend", default="shm", help="cohort's backend on 2 ranks")
    p.add_argument("--gemm-reps", type=int, default=20)
    p.add_argument("--json", help="write every figure, run and command line here")
    p.add_argument("--quick", action="store_true", help="tiny models, 1 round, few steps: a smoke test")
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)
    p.add_argument("--gemm-worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_worker:
        return torch_worker(json.loads(args.torch_worker))
    if args.gemm_worker:
        return gemm_worker(args.gemm_worker)

    sizes = QUICK_MODELS if args.quick else MODELS
    par_models = [] if args.parallel_models == "none" else args.parallel_models.split(",")
    wanted = set(args.models.split(",")) | set(par_models)
    if not wanted <= set(sizes):
        sys.exit(f"unknown model in --models/--parallel-models: {sorted(wanted - set(sizes))} (a or b)")
    models = {k: m for k, m in sizes.items() if k in wanted}
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.steps = args.steps or (3 if args.quick else 6)
    if args.quick:
        args.gemm_reps = min(args.gemm_reps, 5)
    if not os.access(args.cohort, os.X_OK):
        sys.exit(f"no cohort binary at {args.cohort} (pass --cohort)")
    if not shutil.which("mpirun") and par_models:
        sys.exit("mpirun not found (Open MPI), needed for the 2-rank runs; --parallel-models none skips them")

    sys.stdout.reconfigure(line_buffering=True)
    info = machine()
    work = tempfile.mkdtemp(prefix="gpt_vs_torch.")
    os.makedirs(os.path.join(work, "tokens"))
    write_tokens(os.path.join(work, "tokens", "random_train_000000.bin"), 1 << 20, 0)
    write_tokens(os.path.join(work, "tokens", "random_val_000000.bin"), 1 << 14, 1)

    runs = {"gemm": []}
    t_start = time.monotonic()
    try:
        for r in range(args.repeats):
            print(f"round {r + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
            runs["gemm"].append(gemm_rate(args.gemm_reps))
            for k, m in models.items():
                runs.setdefault(f"cohort1_{k}", []).append(cohort_run(args, work, f"c1{k}", m, 1))
                runs.setdefault(f"torch1_{k}", []).append(torch_run(args, m, 1))
            for k in par_models:
                m = models[k]
                runs.setdefault(f"cohort_dp2_{k}", []).append(cohort_run(args, work, f"dp{k}", m, 2))
                runs.setdefault(f"torch_ddp2_{k}", []).append(torch_run(args, m, 2))
                runs.setdefault(f"cohort_tp2_{k}", []).append(cohort_run(args, work, f"tp{k}", m, 2, tensor=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    info["loadavg_end"] = os.getloadavg()

    gemm = {k: statistics.median(g[k] for g in runs["gemm"]) for k in ("numpy_gflops", "torch_gflops")}
    peak = max(gemm.values()) * 1e9
    figures = {"gemm": gemm, "gemm_peak_gflops": peak / 1e9, "models": {}, "two_ranks": {}}

    print(f"\nGPT, fp32 AdamW, random bytes (vocab {VOCAB}), one BLAS thread per process; median of "
          f"{args.repeats} interleaved rounds, {args.warmup} warm-up + {args.steps} timed steps each "
          f"({elapsed:.0f} s)")
    print(f"fp32 GEMM {GEMM_MKN[0]}x{GEMM_MKN[1]}x{GEMM_MKN[2]} on one core (OpenBLAS): "
          f"numpy {gemm['numpy_gflops']:.0f}, torch {gemm['torch_gflops']:.0f} GFLOP/s\n")
    print("One rank, one thread")
    print(f"{'model':<24} {'params':>7} {'tok/step':>8} | {'cohort tok/s':>12} {'torch tok/s':>11} {'ratio':>5} | "
          f"{'cohort RSS':>10} {'torch RSS':>9} {'ratio':>5} | {'cohort %GEMM':>12} {'torch %GEMM':>11} | {'CPU c/t':>9}")
    for k, m in models.items():
        c, t = runs[f"cohort1_{k}"], runs[f"torch1_{k}"]
        fl = flops_per_step(m, m["batch"])
        f = {"model": dict(m, vocab=VOCAB), "params": param_count(m), "flops_per_step": fl,
             "cohort_params": c[0]["summary"]["params"], "torch_params": t[0]["params"],
             "cohort_tokens_per_s": med(c, "tokens_per_s"), "torch_tokens_per_s": med(t, "tokens_per_s"),
             "cohort_step_ms": med(c, "step_ms"), "torch_step_ms": med(t, "step_ms"),
             "cohort_peak_rss_bytes": med(c, "peak_rss_bytes"), "torch_peak_rss_bytes": med(t, "peak_rss_bytes"),
             "cohort_forward_ms": statistics.median(x["summary"]["forward_ms"] for x in c),
             "cohort_backward_ms": statistics.median(x["summary"]["backward_ms"] for x in c),
             "cohort_optimizer_ms": statistics.median(x["summary"]["optimizer_ms"] for x in c),
             "cohort_summary_step_ms": statistics.median(x["summary"]["step_ms"] for x in c),
             "torch_forward_ms": med(t, "forward_ms"), "torch_backward_ms": med(t, "backward_ms"),
             "torch_optimizer_ms": med(t, "optimizer_ms"),
             "cohort_other_load": med(c, "other_load"), "torch_other_load": med(t, "other_load"),
             "cohort_cpu_got": med(c, "cpu_got"), "torch_cpu_got": med(t, "cpu_got")}
        f["tokens_per_s_ratio"] = f["cohort_tokens_per_s"] / f["torch_tokens_per_s"]
        f["rss_ratio"] = f["cohort_peak_rss_bytes"] / f["torch_peak_rss_bytes"]
        f["cohort_gemm_fraction"] = fl / (f["cohort_step_ms"] / 1e3) / peak
        f["torch_gemm_fraction"] = fl / (f["torch_step_ms"] / 1e3) / peak
        figures["models"][k] = f
        print(f"({k}) {describe(m):<20} {f['params'] / 1e6:>6.2f}M {m['batch'] * m['context']:>8} | "
              f"{f['cohort_tokens_per_s']:>12.0f} {f['torch_tokens_per_s']:>11.0f} {f['tokens_per_s_ratio']:>5.2f} | "
              f"{f['cohort_peak_rss_bytes'] / 2**20:>7.0f} MB {f['torch_peak_rss_bytes'] / 2**20:>6.0f} MB "
              f"{f['rss_ratio']:>5.2f} | {100 * f['cohort_gemm_fraction']:>11.1f}% {100 * f['torch_gemm_fraction']:>10.1f}% | "
              f"{100 * f['cohort_cpu_got']:>3.0f}%/{100 * f['torch_cpu_got']:>3.0f}%")
    print("\nWhere the step goes, ms (cohort: summary means over all steps; torch: medians of timed steps)")
    print(f"{'model':<24} {'':>6} {'forward':>8} {'backward':>8} {'optimizer':>9} {'step':>8}")
    for k, m in models.items():
        f = figures["models"][k]
        for who in ("cohort", "torch"):
            step = f[f"{who}_summary_step_ms"] if who == "cohort" else f["torch_step_ms"]
            print(f"({k}) {describe(m):<20} {who:>6} {f[who + '_forward_ms']:>8.1f} {f[who + '_backward_ms']:>8.1f} "
                  f"{f[who + '_optimizer_ms']:>9.1f} {step:>8.1f}")

    if par_models:
        print(f"\nTwo ranks, one thread each (scaling: tokens/s over 2x one rank of the same system; "
              f"cohort --backend {args.backend})")
        print(f"{'model':<24} {'layout':<18} {'tok/s':>7} {'scaling':>7} {'RSS/rank':>9} {'comm share':>10} "
              f"{'CPU':>6}  note")
        for k in par_models:
            m, f1 = models[k], figures["models"][k]
            dp, ddp, tp = runs[f"cohort_dp2_{k}"], runs[f"torch_ddp2_{k}"], runs[f"cohort_tp2_{k}"]
            g = {"cohort_dp2_tokens_per_s": med(dp, "tokens_per_s"),
                 "torch_ddp2_tokens_per_s": med(ddp, "tokens_per_s"),
                 "cohort_tp2_tokens_per_s": med(tp, "tokens_per_s"),
                 "cohort_dp2_peak_rss_bytes": med(dp, "peak_rss_bytes"),
                 "torch_ddp2_peak_rss_bytes": med(ddp, "peak_rss_bytes"),
                 "cohort_tp2_peak_rss_bytes": med(tp, "peak_rss_bytes"),
                 "cohort_dp2_allreduce_share": statistics.median(x["summary"]["allreduce_share"] for x in dp),
                 "cohort_dp2_allreduce_ms": statistics.median(x["summary"]["allreduce_ms"] for x in dp),
                 "cohort_tp2_tensor_comm_ms": statistics.median(x["summary"]["tensor_comm_ms"] for x in tp),
                 "cohort_tp2_summary_step_ms": statistics.median(x["summary"]["step_ms"] for x in tp),
                 "cohort_dp2_other_load": med(dp, "other_load"), "torch_ddp2_other_load": med(ddp, "other_load"),
                 "cohort_tp2_other_load": med(tp, "other_load"),
                 "cohort_dp2_cpu_got": med(dp, "cpu_got"), "torch_ddp2_cpu_got": med(ddp, "cpu_got"),
                 "cohort_tp2_cpu_got": med(tp, "cpu_got"),
                 "cohort_tp2_tensor_comm_share": statistics.median(
                     x["summary"]["tensor_comm_ms"] / x["summary"]["step_ms"] for x in tp)}
            g["cohort_dp2_scaling"] = g["cohort_dp2_tokens_per_s"] / (2 * f1["cohort_tokens_per_s"])
            g["torch_ddp2_scaling"] = g["torch_ddp2_tokens_per_s"] / (2 * f1["torch_tokens_per_s"])
            g["cohort_tp2_speedup"] = g["cohort_tp2_tokens_per_s"] / f1["cohort_tokens_per_s"]
            g["cohort_dp2_vs_torch_ddp2"] = g["cohort_dp2_tokens_per_s"] / g["torch_ddp2_tokens_per_s"]
            figures["two_ranks"][k] = g
            name = f"({k}) {describe(m)}"
            print(f"{name:<24} {'cohort data 2':<18} {g['cohort_dp2_tokens_per_s']:>7.0f} "
                  f"{100 * g['cohort_dp2_scaling']:>6.0f}% {g['cohort_dp2_peak_rss_bytes'] / 2**20:>6.0f} MB "
                  f"{100 * g['cohort_dp2_allreduce_share']:>9.1f}% "
                  f"{100 * g['cohort_dp2_cpu_got']:>5.0f}%  all-reduce; goal scaling >= 90%")
            print(f"{'':<24} {'torch DDP gloo 2':<18} {g['torch_ddp2_tokens_per_s']:>7.0f} "
                  f"{100 * g['torch_ddp2_scaling']:>6.0f}% {g['torch_ddp2_peak_rss_bytes'] / 2**20:>6.0f} MB "
                  f"{'':>10} {100 * g['torch_ddp2_cpu_got']:>5.0f}%  cohort/torch {g['cohort_dp2_vs_torch_ddp2']:.2f}")
            print(f"{'':<24} {'cohort tensor 2':<18} {g['cohort_tp2_tokens_per_s']:>7.0f} {'':>7} "
                  f"{g['cohort_tp2_peak_rss_bytes'] / 2**20:>6.0f} MB "
                  f"{100 * g['cohort_tp2_tensor_comm_share']:>9.1f}% "
                  f"{100 * g['cohort_tp2_cpu_got']:>5.0f}%  tensor all-reduces; "
                  f"x{g['cohort_tp2_speedup']:.2f} one rank")

    print("\nFLOPs/step = 6 * (params - context*width) * B*T + 6 * layers * B * T^2 * width (causal half of "
          "attention); % GEMM = FLOP/s over the best one-core GEMM rate above")
    print("CPU: CPU time / (wall time x processes) of a run, start-up included (medians); the figures assume "
          "it near 100% in runs of 5 s and more (ranks that block while they wait, as PyTorch's Gloo does, read lower on an idle machine)")
    # Contention: other processes kept busy more cores than this run left free. Start-up (MPI, importing
    # torch: about 0.4 s and 1.2 s) dominates shorter runs.
    ncpu = os.cpu_count()
    worst = max([(r["other_load"] * ncpu - max(0, ncpu - r["processes"]), k) for k, v in runs.items()
                 if k != "gemm" for r in v if r["wall_s"] >= 5], default=(0, ""))
    if worst[0] > 0.15:
        print(f"WARNING: other processes took about {worst[0]:.1f} of the cores {worst[1]} needed (load average "
              f"{info['loadavg_start'][0]:.1f} at the start, {info['loadavg_end'][0]:.1f} at the end; "
              f"{ncpu} cores): its figures are low; compare ratios of interleaved runs, not absolute figures")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": {k: v for k, v in vars(args).items()
                                                  if k not in ("torch_worker", "gemm_worker")},
                       "elapsed_s": elapsed, "figures": figures, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
