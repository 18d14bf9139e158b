#!/usr/bin/python3
"""Training curves from `cohort train --history FILE.jsonl`.

    bench/plot_train.py RUN.jsonl [RUN2.jsonl ...] -o curves.png [--labels a,b]

Draws the training loss against the step for every run side by side and, on a
second panel, what the runs evaluated: the test accuracy of a classifier
(data.source idx) or the validation loss of a GPT (data.source tokens).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON line ({e.msg})")
    if not rows:
        sys.exit(f"{path}: no lines; write it with cohort train --history {path}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="--history files")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--labels", help="comma-separated names (default: the file names)")
    args = ap.parse_args()
    labels = args.labels.split(",") if args.labels else [os.path.basename(r) for r in args.runs]
    if len(labels) != len(args.runs):
        sys.exit(f"--labels has {len(labels)} names for {len(args.runs)} runs")
    runs = [load(r) for r in args.runs]
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    eval_kind = None
    for label, rows in zip(labels, runs):
        ax_loss.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=label)
        acc = [(r["step"], 100 * r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        points = acc or val
        if points:
            eval_kind = "test accuracy (%)" if acc else "validation loss (nats)"
            ax_eval.plot(*zip(*points), marker="o", label=label)
    ax_loss.set(xlabel="step", ylabel="training loss", title="training loss")
    ax_loss.legend()
    if eval_kind:
        ax_eval.set(xlabel="step", ylabel=eval_kind, title=eval_kind)
        ax_eval.legend()
    else:
        ax_eval.text(0.5, 0.5, "no evaluations (train.eval_every)", ha="center", va="center")
        ax_eval.set_axis_off()
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
