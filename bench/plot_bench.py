#!/usr/bin/python3
"""Draws `cohort bench --json` rows: bus bandwidth against message size, one
line per backend (and per in-place / out-of-place), log-2 size axis.

Usage: plot_bench.py ROWS.json OUT.png

Uses Debian's python3-matplotlib (scripts/setup installs it).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}"
        n /= 1024
    return str(n)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_bench.py ROWS.json OUT.png")
    with open(sys.argv[1]) as f:
        rows = json.load(f)
    if not rows:
        sys.exit("plot_bench.py: no rows")
    lines = {}
    for r in rows:
        key = (r["backend"], "in-place" if r["inplace"] else "out-of-place", r["type"], r["redop"])
        lines.setdefault(key, []).append((r["size"], r["busbw"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for (backend, place, dtype, redop), pts in sorted(lines.items()):
        pts.sort()
        label = f"{backend} {place}"
        if len({k[2] for k in lines}) > 1 or len({k[3] for k in lines}) > 1:
            label += f" {dtype} {redop}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                linestyle="-" if place == "out-of-place" else "--", label=label)
    ax.set_xscale("log", base=2)
    sizes = sorted({r["size"] for r in rows})
    ax.set_xticks(sizes)
    ax.set_xticklabels([human(s) for s in sizes], rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("message size")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(f"cohort bench: {rows[0]['op']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
