"""PyTorch twin of gpt_bench: nanoGPT's GPT-2 (tied head, pre-LayerNorm
blocks, GELU tanh, causal attention through F.scaled_dot_product_attention
where torch has it, else nanoGPT's explicit softmax) at GPT-2 124M's shape by
default, in fp32 with TF32 off, AdamW (fused when available) with nanoGPT's
GPT-2 settings and gradient clipping, one fixed batch of random tokens;
CUDA-event timing, median of the timed steps.

    python3 torch_gpt.py [--json PATH] [--steps N] [--batch B] [--context T]
                         [--layers L] [--heads H] [--width C] [--vocab V]
                         [--clip X] [--compile]

Exit 3 when torch or a CUDA device is missing."""
import argparse
import json
import math
import statistics
import sys

GPT2_VOCAB = 50257  # batches draw from the real vocabulary; the table is padded


def build(torch, a):
    nn = torch.nn
    F = torch.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(a.width, 3 * a.width)
            self.c_proj = nn.Linear(a.width, a.width)

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(C, dim=2)
            hs = C // a.heads
            q, k, v = (t.view(B, T, a.heads, hs).transpose(1, 2) for t in (q, k, v))
            if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # nanoGPT's fallback: the T x T scores materialised, as Cohort does
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                y = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(a.width)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(a.width)
            self.c_fc = nn.Linear(a.width, 4 * a.width)
            self.c_proj = nn.Linear(4 * a.width, a.width)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(a.vocab, a.width)
            self.wpe = nn.Embedding(a.context, a.width)
            self.h = nn.ModuleList([Block() for _ in range(a.layers)])
            self.ln_f = nn.LayerNorm(a.width)
            for name, p in self.named_parameters():  # GPT-2's initialisation
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * a.layers))
                elif name.endswith("weight") and p.dim() == 2:
                    nn.init.normal_(p, 0.0, 0.02)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, idx, targets):
            pos = torch.arange(idx.size(1), device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # the head is tied to wte
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    return GPT()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--clip", type=float, default=1.0, help="0: no clipping")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"torch_gpt: no torch ({e})", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("torch_gpt: torch sees no CUDA device", file=sys.stderr)
        return 3
    # fp32 as Cohort computes it: no TF32 in matmuls or cuDNN.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    dev = "cuda"
    model = build(torch, a).to(dev)
    params = sum(p.numel() for p in model.parameters())
    kw = dict(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    try:
        opt = torch.optim.AdamW(model.parameters(), fused=True, **kw)
        optimizer = "AdamW(fused=True)"
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(model.parameters(), **kw)
        optimizer = "AdamW(foreach)"
    attention = "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "manual"
    if a.compile and not hasattr(torch, "compile"):
        print(f"torch_gpt: torch {torch.__version__} has no torch.compile", file=sys.stderr)
        return 3
    fwd = torch.compile(model) if a.compile else model
    data = torch.randint(0, min(a.vocab, GPT2_VOCAB), (a.batch, a.context + 1), device=dev)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = fwd(x, y)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        return loss

    first = step().item()
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        loss = step()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    ms = statistics.median(times)
    tokens = a.batch * a.context
    flops_per_token = 6.0 * params + 12.0 * a.layers * a.width * a.context  # nanoGPT's estimate
    out = {"impl": "torch-compile" if a.compile else "torch-eager", "torch": torch.__version__,
           "optimizer": optimizer, "attention": attention, "layers": a.layers, "heads": a.heads, "width": a.width,
           "context": a.context, "vocab": a.vocab, "params": params, "batch": a.batch,
           "clip": a.clip, "ms_per_step": round(ms, 4),
           "tokens_per_s": round(tokens / ms * 1e3, 1),
           "TFLOPs": round(flops_per_token * tokens / ms / 1e9, 2),
           "memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "loss_first": round(first, 5), "loss_last": round(loss.item(), 5)}
    print(f"{out['impl']} GPT step ({a.layers} layers, {a.heads} heads, width {a.width}, "
          f"context {a.context}, vocab {a.vocab}: {params / 1e6:.1f} M parameters; batch {a.batch}, "
          f"fp32 (TF32 off), {attention} attention, {optimizer}{', clipping' if a.clip > 0 else ''}): {ms:.2f} ms/step, "
          f"{out['tokens_per_s']:.0f} tokens/s, {out['TFLOPs']:.1f} TFLOP/s, "
          f"{out['memory_gib']:.1f} GiB peak; loss {first:.4f} -> {out['loss_last']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
