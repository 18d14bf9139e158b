"""PyTorch eager twin of gpu_train_bench: the same MLP (L x Linear(W, W), ReLU
between, cross-entropy over W classes), batch, bf16 autocast with fp32 master
weights, AdamW; CUDA-event timing, median of the timed steps.

    python3 torch_mlp.py [--json PATH] [--steps N] [--width W] [--batch B]
                         [--layers L] [--compile]

Exit 3 when torch or a CUDA device is missing."""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"torch_mlp: no torch ({e})", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("torch_mlp: torch sees no CUDA device", file=sys.stderr)
        return 3
    torch.manual_seed(0)
    dev = "cuda"
    layers = []
    for i in range(a.layers):
        layers.append(torch.nn.Linear(a.width, a.width))
        if i + 1 < a.layers:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(dev)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
        optimizer = "AdamW(fused=True)"
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        optimizer = "AdamW(foreach)"
    fwd = torch.compile(model) if a.compile else model
    x = torch.randn(a.batch, a.width, device=dev)
    y = torch.randint(0, a.width, (a.batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(fwd(x).float(), y)
        loss.backward()
        opt.step()
        return loss

    first = step().item()
    for _ in range(5):
        step()
    times = []
    for _ in range(a.steps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        loss = step()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    ms = statistics.median(times)
    w, b, layers_n = a.width, a.batch, a.layers
    flops = 2.0 * b * w * w * layers_n + 4.0 * b * w * w * layers_n - 2.0 * b * w * w
    out = {"impl": "torch-compile" if a.compile else "torch-eager", "torch": torch.__version__,
           "optimizer": optimizer, "width": w, "layers": layers_n, "batch": b,
           "ms_per_step": round(ms, 4), "samples_per_s": round(b / ms * 1e3, 1),
           "TFLOPs": round(flops / ms / 1e9, 2), "loss_first": round(first, 5),
           "loss_last": round(loss.item(), 5)}
    print(f"{out['impl']} MLP step ({w} x {w}, {layers_n} layers, batch {b}, bf16 autocast, "
          f"{optimizer}): {ms:.3f} ms/step, {out['samples_per_s']:.0f} samples/s, "
          f"{out['TFLOPs']:.1f} TFLOP/s; loss {first:.4f} -> {out['loss_last']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
