#!/usr/bin/python3
"""The PyTorch peer of examples/fashion_mnist.yaml: the same recipe in torch.

MLP 784-1024-1024-10 with ReLU (torch's default nn.Linear init, not Cohort's),
AdamW(lr 1e-3, weight_decay 0.01, betas 0.9/0.999, eps 1e-8), the learning rate
set every step to Cohort's schedule: lr * (s+1)/warmup for s < warmup, then a
cosine from lr to 0 at --steps. Global batch 256 from a seeded permutation of
the 60,000 training images per epoch (pixels / 255, the last 96 images of an
epoch unused, as in Cohort), test accuracy over the 10,000 test images after
every epoch and at the end. One thread per process; with --world 2, DDP over
Gloo (init_method file://), each process taking its half (128) of every
global batch.

  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_fashion_mnist.py --world 1
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_fashion_mnist.py --world 2

Prints one JSON line: eval_accuracy, eval_loss, samples_per_s (training steps
only: the batch gather, forward, backward, all-reduce, optimizer; not the
evaluations), train_s, wall_s (from the start of the script)."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/torch load OpenBLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

T_START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzip'd or not) as a numpy array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: {data.size} bytes of data for shape {shape}")
    return data.reshape(shape)


def load(path, split):
    x = read_idx(os.path.join(path, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(path, f"{split}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y.astype(np.int64))


def lr_at(s, args):
    if s < args.warmup:
        return args.lr * (s + 1) / args.warmup
    p = min(1.0, max(0.0, (s - args.warmup) / max(1, args.steps - args.warmup)))
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * p))


def evaluate(model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return acc, loss


def worker(rank, args, init_file, out):
    torch.set_num_threads(1)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    torch.manual_seed(args.seed)
    layers = [784, 1024, 1024, 10]
    mods = []
    for i in range(len(layers) - 1):
        mods.append(torch.nn.Linear(layers[i], layers[i + 1]))
        if i + 2 < len(layers):
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods)
    model = net
    if args.world > 1:
        dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=args.world)
        model = torch.nn.parallel.DistributedDataParallel(net)  # broadcasts rank 0's weights
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(xtr)
    per_epoch = n // args.global_batch
    local = args.global_batch // args.world
    perm, perm_epoch = None, -1
    history = []
    train_s = 0.0
    if args.world > 1:
        dist.barrier()
    for s in range(args.steps):
        t0 = time.perf_counter()
        epoch = s // per_epoch
        if epoch != perm_epoch:
            perm = torch.from_numpy(np.random.default_rng([args.seed, epoch]).permutation(n))
            perm_epoch = epoch
        start = (s % per_epoch) * args.global_batch + rank * local
        idx = perm[start:start + local]
        x, y = xtr[idx], ytr[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(s, args)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - t0
        last = s + 1 == args.steps
        if (args.eval_every and (s + 1) % args.eval_every == 0) or last:
            if rank == 0:
                acc, eloss = evaluate(net, xte, yte)
                history.append({"step": s + 1, "loss_rank0": loss.item(), "eval_accuracy": acc, "eval_loss": eloss})
            if args.world > 1:
                dist.barrier()  # the other rank waits while rank 0 evaluates, as in Cohort
    if args.world > 1:
        # train_s of the slowest rank: the job is as fast as it.
        t = torch.tensor([train_s], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        train_s = t.item()
    if rank == 0:
        out.put({"peer": "pytorch", "torch": torch.__version__, "world_size": args.world,
                 "ddp": "gloo" if args.world > 1 else None, "init": "torch default (kaiming-uniform a=sqrt(5))",
                 "steps": args.steps, "global_batch": args.global_batch,
                 "eval_accuracy": history[-1]["eval_accuracy"], "eval_loss": history[-1]["eval_loss"],
                 "samples_per_s": args.steps * args.global_batch / train_s, "train_s": train_s,
                 "history": history})
    if args.world > 1:
        dist.destroy_process_group()


class Box:
    """The result of a worker run in this process (a queue's put/get)."""

    def put(self, v):
        self.v = v

    def get(self):
        return self.v


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=int, default=1, help="1: one process; 2+: DDP over Gloo")
    p.add_argument("--steps", type=int, default=1170)
    p.add_argument("--warmup", type=int, default=117)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=234)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=DATA)
    args = p.parse_args()
    if args.global_batch % args.world:
        p.error("--global-batch must divide by --world")
    if args.world == 1:
        out = Box()
        worker(0, args, None, out)
    else:
        out = mp.get_context("spawn").SimpleQueue()
        with tempfile.TemporaryDirectory() as d:
            mp.spawn(worker, args=(args, os.path.join(d, "init"), out), nprocs=args.world, join=True)
    res = out.get()
    res["wall_s"] = time.perf_counter() - T_START
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
