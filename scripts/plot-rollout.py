#!/usr/bin/env python3
"""Draws an UpdateRollout's progress over time from `make bench-cluster`'s rollout.csv
(seconds,wave,updating,succeeded,failed): per wave, groups succeeded (solid), updating
(dashed) and failed (dotted).

Usage: plot-rollout.py rollout.csv out.png
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    waves = defaultdict(lambda: defaultdict(list))
    order = []
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            w = row["wave"]
            if w not in order:
                order.append(w)
            t = float(row["seconds"])
            for field in ("updating", "succeeded", "failed"):
                waves[w][field].append((t, int(row[field])))
    if not waves:
        sys.exit(f"{src}: no rows")
    fig, ax = plt.subplots(figsize=(9, 4))
    styles = {"succeeded": "-", "updating": "--", "failed": ":"}
    for i, w in enumerate(order):
        color = f"C{i}"
        for field, style in styles.items():
            points = waves[w][field]
            ax.step([t for t, _ in points], [n for _, n in points], style, where="post",
                    color=color, label=f"{w}: {field}")
    ax.set_xlabel("seconds since the operator started")
    ax.set_ylabel("delivery groups")
    ax.set_title("UpdateRollout: 3 waves over 20 groups (canary 1 at a time, early 3, broad 50%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
