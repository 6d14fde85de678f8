#!/usr/bin/env python3
"""Draws Ready resources over time from `make bench-cluster`'s CSV (label,seconds,ready).

Usage: plot-bench.py ready.csv out.png
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    series = defaultdict(list)
    with open(src, newline="") as f:
        for label, seconds, ready in csv.reader(f):
            series[label].append((float(seconds), int(ready)))
    if not series:
        sys.exit(f"{src}: no rows")
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4), squeeze=False)
    for ax, (label, points) in zip(axes[0], series.items()):
        start = points[0][0]
        xs = [t - start for t, _ in points]
        ys = [n for _, n in points]
        ax.step(xs, ys, where="post")
        ax.set_title(label)
        ax.set_xlabel("seconds since the watch started (the operator starts right after)")
        ax.set_ylabel("resources Ready")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
