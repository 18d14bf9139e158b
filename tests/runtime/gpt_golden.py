#!/usr/bin/python3
"""Golden test: Cohort's GPT against a PyTorch model of the same architecture.

    gpt_golden.py COHORT GPT_DUMP WORKDIR

A nanoGPT-style PyTorch module written here (nothing is downloaded) loads
Cohort's initial parameters with load_state_dict(strict=True); in float64 it
is the reference for
  1. the loss of the first batch (Cohort within 1e-5 relative),
  2. every parameter's gradient on it (max |cohort - torch| <= 1e-4 max |torch|),
  3. 10 AdamW steps with a warm-up + cosine schedule and gradient clipping
     through `cohort train` (each step's loss within 1e-4 relative, and the
     gradient norm before clipping within 1e-4 relative),
  4. `cohort generate --temperature 0` from the checkpoint that run committed
     (PyTorch's greedy decoding from the same parameters).
Exits non-zero on the first failure and prints the worst differences.
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, CONTEXT, LAYERS, HEADS, WIDTH = 50, 32, 2, 2, 24
BATCH, STEPS, SEED = 4, 10, 7
LR, MIN_LR, WARMUP, CLIP = 3e-3, 3e-4, 3, 0.5
BETA1, BETA2, EPS, WD = 0.9, 0.95, 1e-8, 0.1


def read_safetensors(path):
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


def write_tokens(path, tokens):
    """llm.c's token file: 256 int32 header (magic, version, count), uint16 tokens."""
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
        self.c_proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // HEADS
        q = q.view(B, T, HEADS, hs).transpose(1, 2)
        k = k.view(B, T, HEADS, hs).transpose(1, 2)
        v = v.view(B, T, HEADS, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.c_proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(WIDTH)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(WIDTH)
        self.mlp = Mlp()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT; the head is the token embedding (tied, not a module)."""

    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(VOCAB, WIDTH), wpe=nn.Embedding(CONTEXT, WIDTH),
            h=nn.ModuleList([Block() for _ in range(LAYERS)]), ln_f=nn.LayerNorm(WIDTH)))

    def logits(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.size(1)))
        for block in t.h:
            x = block(x)
        return F.linear(t.ln_f(x), t.wte.weight)

    def forward(self, idx, targets):
        return F.cross_entropy(self.logits(idx).view(-1, VOCAB), targets.reshape(-1).long())


def scheduled_lr(step):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = min(1.0, (step - WARMUP) / max(1, STEPS - WARMUP))
    return MIN_LR + (LR - MIN_LR) * 0.5 * (1 + math.cos(math.pi * p))


def main():
    cohort, dump, work = sys.argv[1:4]
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    data = os.path.join(work, "tokens")
    os.makedirs(data, exist_ok=True)
    write_tokens(os.path.join(data, "golden_train_000000.bin"), rng.integers(0, VOCAB, 4000))
    write_tokens(os.path.join(data, "golden_val_000000.bin"), rng.integers(0, VOCAB, 500))
    config = os.path.join(work, "gpt.yaml")
    with open(config, "w") as f:
        f.write(f"""seed: {SEED}
model: {{type: gpt, vocab: {VOCAB}, context: {CONTEXT}, layers: {LAYERS}, heads: {HEADS}, width: {WIDTH}}}
optimizer: {{type: adamw, lr: {LR}, beta1: {BETA1}, beta2: {BETA2}, eps: {EPS}, weight_decay: {WD}}}
train: {{steps: {STEPS}, batch_per_rank: {BATCH}, log_every: 1, clip_grad_norm: {CLIP},
        lr_schedule: {{warmup_steps: {WARMUP}, decay: cosine, min_lr: {MIN_LR}}}}}
data: {{source: tokens, path: {data}}}
checkpoint: {{dir: {work}/ckpt}}
""")
    dumped = os.path.join(work, "dump.safetensors")
    subprocess.run([dump, config, dumped, str(STEPS)], check=True)
    d = read_safetensors(dumped)
    model = GPT()
    state = {k: v for k, v in d.items() if k.startswith("transformer.")}
    model.load_state_dict(state, strict=True)
    model = model.double()
    failures = []

    # 1 and 2: the loss and every gradient on the first batch.
    loss = model(d["x.0"], d["y.0"])
    loss.backward()
    ours = float(d["loss"][0])
    rel = abs(ours - loss.item()) / abs(loss.item())
    print(f"loss: cohort {ours:.8f} torch {loss.item():.8f} rel {rel:.2e}")
    if rel > 1e-5:
        failures.append(f"loss differs by {rel:.2e} relative (limit 1e-5)")
    worst = (0.0, "")
    for name, p in model.named_parameters():
        g = d["grad." + name].double()
        err = (g - p.grad).abs().max().item() / max(p.grad.abs().max().item(), 1e-30)
        worst = max(worst, (err, name))
        if err > 1e-4:
            failures.append(f"gradient of {name} differs by {err:.2e} of its largest value (limit 1e-4)")
    print(f"gradients: worst {worst[0]:.2e} ({worst[1]}) over {len(list(model.parameters()))} tensors")

    # 3: 10 AdamW steps with the schedule and clipping, against `cohort train`.
    model.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=EPS, weight_decay=WD)
    ref_losses, ref_norms = [], []
    for s in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(s)
        opt.zero_grad()
        loss = model(d[f"x.{s}"], d[f"y.{s}"])
        loss.backward()
        ref_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)))
        opt.step()
        ref_losses.append(loss.item())
    history = os.path.join(work, "history.jsonl")
    final = os.path.join(work, "final.safetensors")
    subprocess.run(["rm", "-rf", os.path.join(work, "ckpt")], check=True)
    run = subprocess.run([cohort, "train", "--config", config, "--history", history, "--save-params", final],
                         capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout, run.stderr)
        sys.exit("cohort train failed")
    lines = [json.loads(line) for line in open(history)]
    if [h["step"] for h in lines] != list(range(1, STEPS + 1)):
        sys.exit(f"history has steps {[h['step'] for h in lines]}, expected 1..{STEPS}")
    if not any(n > CLIP for n in ref_norms):
        failures.append(f"no step clipped (norms {ref_norms}): the test would not see clipping")
    print(" step   cohort loss    torch loss    rel     cohort norm  torch norm    rel      lr")
    for s, h in enumerate(lines):
        lrel = abs(h["loss"] - ref_losses[s]) / abs(ref_losses[s])
        nrel = abs(h["grad_norm"] - ref_norms[s]) / ref_norms[s]
        lr_rel = abs(h["lr"] - scheduled_lr(s)) / scheduled_lr(s)
        print(f"{s + 1:5d} {h['loss']:13.8f} {ref_losses[s]:13.8f} {lrel:8.1e} {h['grad_norm']:11.6f} "
              f"{ref_norms[s]:11.6f} {nrel:8.1e} {h['lr']:.3e}")
        if lrel > 1e-4:
            failures.append(f"step {s + 1}: loss differs by {lrel:.2e} relative (limit 1e-4)")
        if nrel > 1e-4:
            failures.append(f"step {s + 1}: gradient norm differs by {nrel:.2e} relative (limit 1e-4)")
        if lr_rel > 1e-6:
            failures.append(f"step {s + 1}: learning rate {h['lr']} is not the schedule's {scheduled_lr(s)}")
    # 4: greedy generation from the checkpoint the run committed, against
    # PyTorch's argmax over the whole window (no cache) with the same
    # parameters. 7 + 40 tokens pass the context of 32, so the window restarts
    # from the last 16 tokens once, as runtime/generate.h says. Where the two
    # pick differently, the reference's top two logits must be within
    # rounding (1e-4) of each other; the check then goes on with Cohort's token.
    prompt = "+,-./01"  # bytes 43..49, inside the test's vocabulary of 50
    gen = subprocess.run([cohort, "generate", "--checkpoint", os.path.join(work, "ckpt"), "--prompt", prompt,
                          "--tokens", "40", "--temperature", "0", "--json"], capture_output=True, text=True)
    if gen.returncode != 0:
        print(gen.stdout, gen.stderr)
        sys.exit("cohort generate failed")
    out = json.loads(gen.stdout)
    tokens, plen = out["tokens"], out["prompt_len"]
    if plen != len(prompt) or tokens[:plen] != [ord(c) for c in prompt] or len(tokens) != plen + 40:
        failures.append(f"generate: prompt_len {plen}, tokens {tokens}")
    trained = read_safetensors(final)
    model.load_state_dict({k: v.double() for k, v in trained.items()}, strict=True)
    near_ties, base = 0, 0
    with torch.no_grad():
        for i in range(plen, len(tokens)):
            ctx = torch.tensor([tokens[base:i]])
            logits = model.logits(ctx)[0, -1]
            best = int(torch.argmax(logits))
            if best != tokens[i]:
                gap = float(logits[best] - logits[tokens[i]])
                if gap > 1e-4:
                    failures.append(f"generate: token {i} is {tokens[i]}, greedy PyTorch picks {best} "
                                    f"(logit gap {gap:.2e})")
                    break
                near_ties += 1
            if i + 1 - base - 1 == CONTEXT:  # the cache is full: restart from the last CONTEXT/2 tokens
                base = i + 1 - CONTEXT // 2
    print(f"generate: {len(tokens) - plen} greedy tokens equal PyTorch's argmax ({near_ties} near ties)")
    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        sys.exit(1)
    print("gpt_golden: PASS")


if __name__ == "__main__":
    main()
