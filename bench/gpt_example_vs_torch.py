#!/usr/bin/python3
"""examples/gpt.yaml end to end: Cohort on 2 ranks against PyTorch on the same
recipe, from the same initial parameters and on the same batches.

  /usr/bin/python3 bench/gpt_example_vs_torch.py [--cohort build/bin/cohort] [--json out.json]
      [--torch-threads 2] [--work DIR] [--quick]

About 20 minutes on 2 idle cores; 55 minutes when another job keeps them busy.
With --work DIR (kept), a rerun after an interruption reuses a finished Cohort
phase and resumes PyTorch from its last saved state (every 20 steps); a Cohort
run ended part way is resumed from its checkpoint within one invocation.

1. Tokenizes Debian's fortunes (`cohort data tokenize`) into a temp dir and
   writes two copies of examples/gpt.yaml pointing at it: one without the
   checkpoint section, for `cohort train --steps 0 --save-params init` (the
   initial parameters; a config with a checkpoint dir would resume from it),
   and one with a temp checkpoint dir and log_every 1 (every step in the
   --history; reporting only). Cohort trains on 2 ranks (mpirun, one BLAS
   thread each).
2. PyTorch 1.13 in this process (fp32, torch.set_num_threads(1) and
   OPENBLAS_NUM_THREADS=--torch-threads: a loss comparison, not a speed one)
   trains a nanoGPT-style module (the one of tests/runtime/gpt_golden.py, with
   the example's shape) loaded from those parameters with
   load_state_dict(strict=True): torch.optim.AdamW with one group (weight decay
   on every parameter), clip_grad_norm_, the example's warm-up + cosine
   schedule, global batch 16 in one process. Batches are Cohort's:
     sample j of step s starts at p = Mix64(Mix64(seed ^ Mix64(s)) + j) mod (N - T)
   (runtime/data/tokens.h, Mix64 = SplitMix64's finaliser, uint64), x =
   tokens[p, p+T), y = tokens[p+1, p+T+1); validation batch k uses seed ^
   0x6576616c2d6b6579 and k in place of s on the _val file (runtime/trainer.cc).
   Rank r's samples [8r, 8r+8) of the 16 are the rows of one batch of 16, and
   Cohort's loss and gradient are the means over the 2 ranks: the global mean.
   Checks that these are the same batches: PyTorch's first-step loss and
   gradient norm against Cohort's history step 1 (1e-4 / 1e-3 relative; a
   control shows how far another batch lands), and PyTorch's validation loss
   of Cohort's final parameters against Cohort's val_loss at the last step.
3. `cohort generate` from Cohort's final checkpoint: a 200-token sample
   (--prompt "The " --temperature 0.8 --top-k 40 --seed 1) and a greedy one.
4. Prints the per-evaluation table (validation loss, Cohort vs PyTorch; goal:
   Cohort within 2% of PyTorch at the last step) and writes --json with every
   figure (both runs' per-step losses, gradient norms and learning rates).

--quick: a 1-layer width-32 model, context 32, 8 steps, evaluations every 4
steps over 2 batches: a smoke test of the whole pipeline (< 1 minute).
"""
import argparse
import copy
import json
import math
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/CMakeLists.txt's COHORT_MPIRUN.
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "--mca", "btl", "self,vader", "-x", "OPENBLAS_NUM_THREADS=1"]
RANKS = 2
EVAL_SEED_SALT = 0x6576616c2d6b6579  # runtime/trainer.cc kEvalSeedSalt
MASK64 = (1 << 64) - 1
GOAL_REL = 0.02            # Cohort's last validation loss within 2% of PyTorch's
FIRST_LOSS_REL = 1e-4      # first step, same parameters and batch: fp32 rounding only
FIRST_NORM_REL = 1e-3
FINAL_EVAL_REL = 1e-4      # PyTorch's evaluation of Cohort's final parameters
GEN_TOKENS = 200
RUN_TIMEOUT_S = 3 * 3600
TORCH_SAVE_EVERY = 20
MAX_ATTEMPTS = 3           # Cohort runs resumed from their checkpoint after an interruption
QUICK = dict(model=dict(context=32, layers=1, heads=2, width=32),
             train=dict(steps=8, eval_every=4, eval_batches=2,
                        lr_schedule=dict(warmup_steps=2, decay="cosine", min_lr=0.0001)))


def env1():
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def run(cmd, timeout=RUN_TIMEOUT_S, log_path=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env1(), timeout=timeout)
    wall = time.perf_counter() - t0
    if log_path:
        with open(log_path, "w") as f:
            f.write(p.stdout + "\n--- stderr ---\n" + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}")
    return p.stdout, wall


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


# ---------------------------------------------------------------------------
# Cohort's data and schedule, in Python.

def mix64(x):
    """SplitMix64's finaliser (runtime/rng.h), mod 2^64."""
    x = (x + 0x9e3779b97f4a7c15) & MASK64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & MASK64
    return x ^ (x >> 31)


def window_start(seed, step, sample, tokens, context):
    """TokenDataset::WindowStart (runtime/data/tokens.h)."""
    h = mix64((mix64((seed & MASK64) ^ mix64(step)) + sample) & MASK64)
    return h % (tokens - context)


def read_tokens(path):
    """llm.c's token file: int32 header[256] (magic, version 1, count), then uint16 tokens."""
    import numpy as np
    header = np.fromfile(path, dtype=np.int32, count=256)
    if header[0] != 20240520 or header[1] != 1:
        raise RuntimeError(f"{path}: not a version-1 llm.c token file")
    toks = np.fromfile(path, dtype=np.uint16, offset=1024)
    if len(toks) != header[2]:
        raise RuntimeError(f"{path}: header says {header[2]} tokens, file holds {len(toks)}")
    return toks


def split_tokens(data_dir, split):
    import numpy as np
    files = sorted(f for f in os.listdir(data_dir) if f.endswith(".bin") and f"_{split}" in f)
    return np.concatenate([read_tokens(os.path.join(data_dir, f)) for f in files])


def batch(tokens, seed, step, count, context):
    """Samples [0, count) of `step`: x, y as int64 tensors (count, context), and the starts."""
    import numpy as np
    import torch
    starts = [window_start(seed, step, j, len(tokens), context) for j in range(count)]
    x = np.stack([tokens[p:p + context] for p in starts]).astype(np.int64)
    y = np.stack([tokens[p + 1:p + context + 1] for p in starts]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y), starts


def scheduled_lr(step, lr, warmup, min_lr, steps, decay):
    """ScheduledLr (runtime/config.cc), 0-based step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if decay == "none":
        return lr
    p = min(1.0, max(0.0, (step - warmup) / max(1, steps - warmup)))
    if decay == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
    return lr - (lr - min_lr) * p


def read_safetensors(path):
    import numpy as np
    import torch
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "I32": np.int32}[v["dtype"]]
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=dtype).reshape(v["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


# ---------------------------------------------------------------------------
# nanoGPT's GPT (tests/runtime/gpt_golden.py's module, with the shape as arguments).

def make_gpt(vocab, context, layers, heads, width):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(width, 3 * width)
            self.c_proj = nn.Linear(width, width)

        def forward(self, x, mask):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(C, dim=2)
            hs = C // heads
            q = q.view(B, T, heads, hs).transpose(1, 2)
            k = k.view(B, T, heads, hs).transpose(1, 2)
            v = v.view(B, T, heads, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(width, 4 * width)
            self.c_proj = nn.Linear(4 * width, width)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(width)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(width)
            self.mlp = Mlp()

        def forward(self, x, mask):
            x = x + self.attn(self.ln_1(x), mask)
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        """The head is the token embedding (tied, not a module)."""

        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab, width), wpe=nn.Embedding(context, width),
                h=nn.ModuleList([Block() for _ in range(layers)]), ln_f=nn.LayerNorm(width)))
            self._mask = torch.tril(torch.ones(context, context, dtype=torch.bool))

        def forward(self, idx, targets):
            t = self.transformer
            T = idx.size(1)
            x = t.wte(idx) + t.wpe(torch.arange(T))
            mask = self._mask[:T, :T]
            for block in t.h:
                x = block(x, mask)
            logits = F.linear(t.ln_f(x), t.wte.weight)
            return F.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))

    return GPT()


# ---------------------------------------------------------------------------

def write_configs(work, data_dir, quick):
    import yaml
    with open(os.path.join(ROOT, "examples", "gpt.yaml")) as f:
        cfg = yaml.safe_load(f)
    if quick:
        cfg["model"].update(QUICK["model"])
        cfg["train"].update(QUICK["train"])
    cfg["data"]["path"] = data_dir
    init_cfg = copy.deepcopy({k: v for k, v in cfg.items() if k != "checkpoint"})
    cfg["train"]["log_every"] = 1  # every step in --history; reporting only
    cfg["checkpoint"] = dict(cfg.get("checkpoint") or {}, dir=os.path.join(work, "ckpt"))
    paths = {}
    for name, c in (("init", init_cfg), ("train", cfg)):
        paths[name] = os.path.join(work, f"gpt_{name}.yaml")
        with open(paths[name], "w") as f:
            yaml.safe_dump(c, f, sort_keys=False)
    return cfg, paths


def recipe_of(cfg):
    m, o, t = cfg["model"], cfg["optimizer"], cfg["train"]
    s = t.get("lr_schedule") or {}
    if o.get("type") != "adamw" or m.get("type") != "gpt":
        raise RuntimeError("examples/gpt.yaml is no longer a GPT with AdamW")
    if "global_batch" not in t:
        raise RuntimeError("examples/gpt.yaml has no train.global_batch")
    return dict(seed=int(cfg["seed"]), vocab=m["vocab"], context=m["context"], layers=m["layers"],
                heads=m["heads"], width=m["width"], lr=o["lr"], beta1=o.get("beta1", 0.9),
                beta2=o.get("beta2", 0.999), eps=o.get("eps", 1e-8), weight_decay=o.get("weight_decay", 0.0),
                steps=t["steps"], global_batch=t["global_batch"], clip=t.get("clip_grad_norm", 0.0),
                warmup=s.get("warmup_steps", 0), decay=s.get("decay", "none"), min_lr=s.get("min_lr", 0.0),
                eval_every=t.get("eval_every", 0), eval_batches=t.get("eval_batches", 8))


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cohort_phase(args, work, paths, data_dir, res):
    init = os.path.join(work, "init.safetensors")
    out, wall = run([args.cohort, "train", "--config", paths["init"], "--steps", "0", "--save-params", init])
    log(f"initial parameters written ({wall:.1f} s)")
    final = os.path.join(work, "cohort_final.safetensors")
    load0 = loadavg()
    # A run that dies part way (on a shared machine, something may end mpirun:
    # it then exits 1 without a word) is resumed from its last checkpoint, as
    # examples/gpt.yaml's comment says a rerun does; a resumed run repeats the
    # uninterrupted one bit for bit (runtime/data/tokens.h). Each attempt has
    # its own --history (its steps are global); a later one replaces the
    # earlier one's steps from where it resumed.
    rows, attempts = {}, []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        history = os.path.join(work, f"cohort_history.{attempt}.jsonl")
        cmd = MPIRUN + ["-np", str(RANKS), args.cohort, "train", "--config", paths["train"],
                        "--save-params", final, "--history", history]
        log("cohort: " + shlex.join(cmd))
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env1(), timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - t0
        with open(os.path.join(work, f"cohort_train.{attempt}.log"), "w") as f:
            f.write(p.stdout + "\n--- stderr ---\n" + p.stderr)
        got = read_history(history)
        first = got[0]["step"] if got else None
        for r in got:
            rows[r["step"]] = r
        if got:  # steps beyond this attempt's last belong to no run any more
            rows = {k: v for k, v in rows.items() if k <= got[-1]["step"]}
        attempts.append(dict(command=shlex.join(cmd), returncode=p.returncode, wall_s=wall,
                             first_step=first, last_step=got[-1]["step"] if got else None,
                             stderr_tail=p.stderr[-2000:], stdout_tail=p.stdout[-600:]))
        if p.returncode == 0:
            break
        log(f"cohort: attempt {attempt} exited {p.returncode} after {wall:.0f} s at step "
            f"{attempts[-1]['last_step']}; stderr: {p.stderr[-400:]!r}")
        if not got or attempt == MAX_ATTEMPTS:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}")
    summary = last_json(p.stdout)
    hist = [rows[k] for k in sorted(rows)]
    losses = [r["loss"] for r in hist[-10:]]
    wall = sum(a["wall_s"] for a in attempts)
    res["cohort"] = dict(command=attempts[-1]["command"], wall_s=wall, attempts=attempts,
                         loadavg_before=load0, loadavg_after=loadavg(), summary=summary, history=hist,
                         final_loss=sum(losses) / len(losses),
                         evals={r["step"]: r["val_loss"] for r in hist if "val_loss" in r})
    log(f"cohort: {wall:.0f} s wall in {len(attempts)} attempt(s), val_loss {summary.get('val_loss')}, "
        f"final_loss {res['cohort']['final_loss']:.4f}")
    return init, final


def generate_phase(args, work, res):
    gens = {}
    for name, extra in (("sample", ["--temperature", "0.8", "--top-k", "40", "--seed", "1"]),
                        ("greedy", ["--temperature", "0"])):
        cmd = [args.cohort, "generate", "--checkpoint", os.path.join(work, "ckpt"), "--prompt", "The ",
               "--tokens", str(GEN_TOKENS)] + extra + ["--json"]
        out, wall = run(cmd, timeout=600)
        g = json.loads(out)
        text = bytes(t for t in g["tokens"] if t < 256).decode("utf-8", "replace")
        gens[name] = dict(command=shlex.join(cmd), tokens=g["tokens"], prompt_len=g["prompt_len"], text=text,
                          wall_s=wall)
    res["generate"] = gens


def torch_phase(args, rc, data_dir, init_path, cohort_final, res, save):
    import torch
    torch.set_num_threads(1)  # GEMMs go to OpenBLAS, which has its own --torch-threads
    torch.manual_seed(0)
    train = split_tokens(data_dir, "train")
    val = split_tokens(data_dir, "val")
    T, B = rc["context"], rc["global_batch"]
    model = make_gpt(rc["vocab"], T, rc["layers"], rc["heads"], rc["width"])
    init = read_safetensors(init_path)
    state = {k: v for k, v in init.items() if k.startswith("transformer.")}
    model.load_state_dict(state, strict=True)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=rc["lr"], betas=(rc["beta1"], rc["beta2"]), eps=rc["eps"],
                            weight_decay=rc["weight_decay"])
    eval_seed = rc["seed"] ^ EVAL_SEED_SALT
    val_batches = [batch(val, eval_seed, k, B, T) for k in range(rc["eval_batches"])]

    def evaluate():
        with torch.no_grad():
            # Cohort: the mean over ranks and batches of each rank's 8-sample mean;
            # equal sizes make it the mean over the 16-sample batches.
            return sum(model(x, y).item() for x, y, _ in val_batches) / len(val_batches)

    cohort_rows = {r["step"]: r for r in res["cohort"]["history"]}
    steps = rc["steps"]
    losses, norms, lrs, evals, step_s = [], [], [], {}, []
    t_start = time.perf_counter()
    out = res["torch"] = dict(threads=dict(torch=torch.get_num_threads(),
                                           openblas=os.environ.get("OPENBLAS_NUM_THREADS")),
                              torch_version=torch.__version__, params=nparams, losses=losses,
                              grad_norms=norms, lrs=lrs, evals=evals, step_s=step_s,
                              loadavg_before=loadavg(), resumed_at=[])
    # With --work, a rerun after an interruption goes on from the last state
    # saved here (every TORCH_SAVE_EVERY steps; deterministic CPU kernels: the
    # same figures as an uninterrupted run).
    state_path = os.path.join(args.work, "torch_state.pt") if args.work else None
    start, wall_before = 0, 0.0
    if state_path and os.path.exists(state_path):
        st = torch.load(state_path)
        model.load_state_dict(st["model"], strict=True)
        opt.load_state_dict(st["opt"])
        losses += st["losses"]; norms += st["norms"]; lrs += st["lrs"]; step_s += st["step_s"]
        evals.update(st["evals"])
        out["first_step"] = st["first_step"]
        out["resumed_at"] = st["resumed_at"] + [st["step"]]
        out["loadavg_before"] = st["loadavg_before"]
        start, wall_before = st["step"], st["wall_s"]
        log(f"torch: resumed at step {start} from {state_path}")

    def save_state(step):
        if not state_path:
            return
        st = dict(model=model.state_dict(), opt=opt.state_dict(), losses=losses, norms=norms, lrs=lrs,
                  step_s=step_s, evals=evals, first_step=out.get("first_step"), resumed_at=out["resumed_at"],
                  loadavg_before=out["loadavg_before"], step=step,
                  wall_s=wall_before + time.perf_counter() - t_start)
        torch.save(st, state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)

    for s in range(start, steps):
        t0 = time.perf_counter()
        lr = scheduled_lr(s, rc["lr"], rc["warmup"], rc["min_lr"], steps, rc["decay"])
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, starts = batch(train, rc["seed"], s, B, T)
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        if rc["clip"] > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), rc["clip"]))
        else:
            norm = float(torch.norm(torch.stack([p.grad.norm() for p in model.parameters()])))
        if s == 0:
            # The same batch as Cohort's step 1? Its loss and gradient norm from the same parameters.
            c1 = cohort_rows[1]
            lrel = abs(loss.item() - c1["loss"]) / abs(c1["loss"])
            nrel = abs(norm - c1["grad_norm"]) / c1["grad_norm"]
            # Control: the same parameters on step 2's batch, the distance a wrong batch would give.
            grads = [p.grad.clone() for p in model.parameters()]
            x2, y2, _ = batch(train, rc["seed"], 1, B, T)
            with torch.no_grad():
                l2 = model(x2, y2).item()
            for p, g in zip(model.parameters(), grads):
                p.grad = g
            out["first_step"] = dict(
                window_starts=starts, torch_loss=loss.item(), cohort_loss=c1["loss"], loss_rel=lrel,
                torch_grad_norm=norm, cohort_grad_norm=c1["grad_norm"], grad_norm_rel=nrel,
                control_loss_other_batch=l2, control_loss_rel=abs(l2 - c1["loss"]) / abs(c1["loss"]),
                ok=lrel <= FIRST_LOSS_REL and nrel <= FIRST_NORM_REL)
            log(f"torch step 1: loss {loss.item():.6f} (cohort {c1['loss']:.6f}, rel {lrel:.1e}), grad norm "
                f"{norm:.5f} (cohort {c1['grad_norm']:.5f}, rel {nrel:.1e}); step 2's batch: {l2:.6f}")
            if not out["first_step"]["ok"]:
                save()
                raise RuntimeError(f"PyTorch's first step does not match Cohort's (loss rel {lrel:.2e} > "
                                   f"{FIRST_LOSS_REL} or grad norm rel {nrel:.2e} > {FIRST_NORM_REL}): "
                                   "not the same batch or parameters")
        opt.step()
        losses.append(loss.item())
        norms.append(norm)
        lrs.append(lr)
        ev = rc["eval_every"]
        if ev > 0 and ((s + 1) % ev == 0 or s + 1 == steps):
            evals[s + 1] = evaluate()
            log(f"torch step {s + 1}: val_loss {evals[s + 1]:.4f} (cohort {res['cohort']['evals'].get(s + 1)})")
        step_s.append(time.perf_counter() - t0)
        if (s + 1) % TORCH_SAVE_EVERY == 0:
            log(f"torch step {s + 1}/{steps}: loss {loss.item():.4f}, {step_s[-1]:.2f} s/step")
            save_state(s + 1)
            save()
    wall = wall_before + time.perf_counter() - t_start
    out.update(wall_s=wall, loadavg_after=loadavg(),
               final_loss=sum(losses[-10:]) / len(losses[-10:]),
               tokens_per_s=steps * B * T / max(1e-9, sum(step_s)))
    # PyTorch's evaluation of Cohort's final parameters: the validation batches are Cohort's.
    fin = read_safetensors(cohort_final)
    model.load_state_dict({k: v for k, v in fin.items() if k.startswith("transformer.")}, strict=True)
    last = max(res["cohort"]["evals"]) if res["cohort"]["evals"] else None
    if last is not None:
        v = evaluate()
        rel = abs(v - res["cohort"]["evals"][last]) / res["cohort"]["evals"][last]
        out["eval_of_cohort_final"] = dict(torch_val_loss=v, cohort_val_loss=res["cohort"]["evals"][last],
                                           rel=rel, ok=rel <= FINAL_EVAL_REL)
    log(f"torch: {wall:.0f} s wall")


def report(res, rc):
    c, t = res["cohort"], res.get("torch", {})
    ln2 = math.log(2)
    lines = []
    fs = t.get("first_step")
    if fs:
        lines.append(f"Same batches: step 1 loss cohort {fs['cohort_loss']:.6f} / torch {fs['torch_loss']:.6f} "
                     f"(rel {fs['loss_rel']:.1e}), grad norm {fs['cohort_grad_norm']:.5f} / "
                     f"{fs['torch_grad_norm']:.5f} (rel {fs['grad_norm_rel']:.1e}); another batch would give "
                     f"rel {fs['control_loss_rel']:.1e}")
    ef = t.get("eval_of_cohort_final")
    if ef:
        lines.append(f"Same validation batches: PyTorch's val loss of Cohort's final parameters "
                     f"{ef['torch_val_loss']:.6f} vs Cohort's {ef['cohort_val_loss']:.6f} (rel {ef['rel']:.1e})")
    lines.append("")
    hist = {r["step"]: r for r in c["history"]}
    lines.append("| step | lr | train loss cohort | train loss torch | val loss cohort | val loss torch "
                 "| (cohort - torch) / torch | val bits/byte cohort / torch |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = []
    for step in sorted(c["evals"]):
        cv, tv = c["evals"][step], t.get("evals", {}).get(step)
        tl = t["losses"][step - 1] if t.get("losses") and len(t["losses"]) >= step else None
        row = dict(step=step, lr=hist[step]["lr"], cohort_train_loss=hist[step]["loss"], torch_train_loss=tl,
                   cohort_val_loss=cv, torch_val_loss=tv,
                   rel=(cv - tv) / tv if tv else None)
        table.append(row)
        f = lambda v, fmt="{:.4f}": "-" if v is None else fmt.format(v)
        lines.append(f"| {step} | {row['lr']:.2e} | {f(row['cohort_train_loss'])} | {f(tl)} | {f(cv, '{:.6f}')} | "
                     f"{f(tv, '{:.6f}')} | {f(None if tv is None else 100 * row['rel'], '{:+.5f}%')} | "
                     f"{cv / ln2:.3f} / {f(None if tv is None else tv / ln2, '{:.3f}')} |")
    res["table"] = table
    # Training loss, step by step: the runs start equal and drift apart as fp32 rounding compounds.
    rels = [(st, (hist[st]["loss"] - t["losses"][st - 1]) / t["losses"][st - 1])
            for st in sorted(hist) if t.get("losses") and st <= len(t["losses"])]
    if rels:
        res["train_loss_rel"] = {st: r for st, r in rels}
        first10 = max(abs(r) for st, r in rels if st <= 10)
        last = [r for st, r in rels if st > rc["steps"] - 10]
        lines.append("")
        worst = max(rels, key=lambda v: abs(v[1]))
        lines.append(f"Training loss, cohort vs torch per step: max |rel| {first10:.1e} over steps 1-10, "
                     f"{abs(worst[1]):.1e} over all (step {worst[0]}), mean {sum(last) / max(1, len(last)):+.1e} "
                     f"over the last 10 steps")
    s = c["summary"]
    lines.append("")
    lines.append(f"| run | final_loss (mean of last 10 steps) | val_loss | wall s | training tokens/s |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    resumed = f", {len(c['attempts'])} attempts (resumed)" if len(c["attempts"]) > 1 else ""
    lines.append(f"| Cohort, 2 ranks (mpirun, 1 BLAS thread each{resumed}) | {c['final_loss']:.4f} | "
                 f"{s['val_loss']:.4f} | {c['wall_s']:.0f} (summary wall_s {s['wall_s']:.0f}) | "
                 f"{s['tokens_per_s']:.0f} |")
    if "final_loss" in t:
        tv = t["evals"][max(t["evals"])]
        lines.append(f"| PyTorch {t['torch_version']}, 1 process ({t['threads']['torch']} torch thread, "
                     f"{t['threads']['openblas']} OpenBLAS) | {t['final_loss']:.4f} | {tv:.4f} | {t['wall_s']:.0f} | "
                     f"{t['tokens_per_s']:.0f} |")
    if table and table[-1]["rel"] is not None:
        rel = table[-1]["rel"]
        res["goal"] = dict(step=table[-1]["step"], rel=rel, limit=GOAL_REL, met=abs(rel) <= GOAL_REL)
        lines.append("")
        lines.append(f"Goal: Cohort's validation loss at step {table[-1]['step']} within {100 * GOAL_REL:.0f}% of "
                     f"PyTorch's: {100 * rel:+.5f}% -> {'MET' if abs(rel) <= GOAL_REL else 'NOT MET'}")
    lines.append(f"Load average before/after: cohort {c['loadavg_before']} / {c['loadavg_after']}"
                 + (f", torch {t['loadavg_before']} / {t.get('loadavg_after')}" if t else "")
                 + f" on {os.cpu_count()} cores (wall times are only as good as the machine was idle)")
    for name, g in res.get("generate", {}).items():
        lines.append("")
        lines.append(f"cohort generate ({name}): {g['command']}")
        lines.append(g["text"])
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=os.path.join(ROOT, "build", "bin", "cohort"))
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--torch-threads", type=int, default=2, help="OpenBLAS threads of the PyTorch run")
    ap.add_argument("--work", help="working directory (default: a temp dir, removed at the end)")
    ap.add_argument("--fortunes", default="/usr/share/games/fortunes")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    # OpenBLAS reads its thread count when it loads (numpy or torch import): before any import of either.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.torch_threads)
    os.environ["OMP_NUM_THREADS"] = "1"
    args.cohort = os.path.abspath(args.cohort)
    work = args.work or tempfile.mkdtemp(prefix="gpt_example_")
    os.makedirs(work, exist_ok=True)
    res = dict(cohort_binary=args.cohort, quick=args.quick, host=os.uname().nodename, cores=os.cpu_count(),
               started=time.strftime("%Y-%m-%d %H:%M:%S"), work=work)

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)

    def on_signal(signum, frame):
        log(f"received signal {signum}: stopping")
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t0 = time.perf_counter()
    try:
        data_dir = os.path.join(work, "data")
        init, final = os.path.join(work, "init.safetensors"), os.path.join(work, "cohort_final.safetensors")
        # With --work, a rerun reuses a finished Cohort phase (tokenize, train, generate).
        phases = os.path.join(work, "cohort_phase.json")
        if os.path.exists(phases):
            with open(phases) as f:
                done = json.load(f)
            done["cohort"]["evals"] = {int(k): v for k, v in done["cohort"]["evals"].items()}
            res.update(done)
            rc = res["recipe"]
            log(f"reusing the finished Cohort run in {work}")
        else:
            out, _ = run([args.cohort, "data", "tokenize", "--input", args.fortunes, "--out", data_dir,
                          "--name", "fortunes", "--json"])
            res["tokenize"] = last_json(out)
            log(f"tokenized: {res['tokenize']['train_tokens']} train / {res['tokenize']['val_tokens']} val tokens")
            cfg, paths = write_configs(work, data_dir, args.quick)
            rc = recipe_of(cfg)
            res["recipe"], res["config"] = rc, open(paths["train"]).read()
            init, final = cohort_phase(args, work, paths, data_dir, res)
            save()
            generate_phase(args, work, res)
            with open(phases + ".tmp", "w") as f:
                json.dump({k: res[k] for k in ("tokenize", "recipe", "config", "cohort", "generate")}, f)
            os.replace(phases + ".tmp", phases)
        save()
        torch_phase(args, rc, data_dir, init, final, res, save)
        res["total_wall_s"] = time.perf_counter() - t0
        text = report(res, rc)
        save()
        print("\n" + text)
        bad = [k for k in ("first_step", "eval_of_cohort_final") if not res["torch"].get(k, {}).get("ok", False)]
        if bad:
            print("FAIL: " + ", ".join(bad))
            return 1
        return 0 if res.get("goal", {}).get("met", False) else 2
    finally:
        res["total_wall_s"] = time.perf_counter() - t0
        save()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
