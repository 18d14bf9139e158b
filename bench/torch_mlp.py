#!/usr/bin/python3
"""The PyTorch peer for `cohort train`'s benchmark: the same MLP, batch and
optimizer, one thread per process, with DDP over Gloo when world > 1.

  /usr/bin/python3 bench/torch_mlp.py --world 1 --steps 200
  /usr/bin/python3 bench/torch_mlp.py --world 2 --steps 200   # DDP, gloo, 25 MB buckets

Prints one JSON line: {"world_size", "samples_per_s", "step_ms", ...}.
Runs on Debian's python3-torch (scripts/setup --peers)."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def build(layers):
    mods = []
    for i in range(len(layers) - 1):
        mods.append(torch.nn.Linear(layers[i], layers[i + 1]))
        if i + 2 < len(layers):
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def worker(rank, args, port, out):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build(args.layers)
    if args.world > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=args.world)
        model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=25)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    # A fixed pool of random batches: data generation is not what is timed.
    g = torch.Generator().manual_seed(rank)
    pool = [(torch.randn(args.batch, args.layers[0], generator=g),
             torch.randint(0, args.layers[-1], (args.batch,), generator=g)) for _ in range(8)]

    def step(i):
        x, y = pool[i % len(pool)]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    if args.world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    if args.world > 1:
        dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        out.put({"peer": "pytorch", "torch": torch.__version__, "world_size": args.world,
                 "ddp": "gloo" if args.world > 1 else None, "steps": args.steps,
                 "batch_per_rank": args.batch,
                 "samples_per_s": args.steps * args.batch * args.world / dt,
                 "step_ms": dt * 1e3 / args.steps})
    if args.world > 1:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--layers", type=lambda s: [int(v) for v in s.split(",")], default=[784, 1024, 1024, 10])
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=worker, args=(r, args, port, out)) for r in range(args.world)]
    for pr in procs:
        pr.start()
    result = out.get(timeout=600)
    for pr in procs:
        pr.join()
        if pr.exitcode != 0:
            raise SystemExit(f"torch worker exited {pr.exitcode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
