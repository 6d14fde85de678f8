#!/usr/bin/env python3
"""Draws the Grafana dashboard's main panels from the /metrics scrapes an e2e run keeps
(target/e2e-metrics/*.prom, written by the_dashboard_and_alerts_name_only_metrics_the_operator_exports),
with the same expressions computed by hand, for the README.

    scripts/plot-dashboard.py target/e2e-metrics docs/dashboard.png
"""
import collections
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrapes(directory):
    """(seconds since the start, {(name, labels): value}) per scrape, in order."""
    out = []
    for path in sorted(pathlib.Path(directory).glob("*.prom")):
        lines = path.read_text().splitlines()
        at = float(lines[0].split()[-1])
        samples = {}
        for line in lines[1:]:
            m = SAMPLE.match(line)
            if m:
                labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
                samples[(m.group(1), labels)] = float(m.group(3))
        out.append((at, samples))
    return out


def series(data, name, key):
    """sum by (key(labels)) of a gauge, per scrape."""
    out = collections.defaultdict(lambda: [0.0] * len(data))
    for i, (_, samples) in enumerate(data):
        for (n, labels), v in samples.items():
            if n == name:
                out[key(dict(labels))][i] += v
    return out


def rate(data, name, key, window=2.0):
    """sum by (key(labels)) (rate(counter[window s])), per scrape."""
    totals = series(data, name, key)
    times = [t for t, _ in data]
    out = {}
    for k, values in totals.items():
        rates = []
        for i, t in enumerate(times):
            j = max((j for j in range(i + 1) if t - times[j] >= window), default=0)
            dt = t - times[j]
            rates.append((values[i] - values[j]) / dt if dt > 0 else 0.0)
        out[k] = rates
    return out


def main(directory, png):
    data = scrapes(directory)
    t = [at for at, _ in data]
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), constrained_layout=True)
    fig.suptitle("alicloud-ops-operator dashboard, drawn from one e2e run's /metrics (deploy/grafana/)")

    ax = axes[0][0]
    for k, v in sorted(series(data, "alicloud_ops_managed_objects", lambda l: f"{l['kind']} {l['reason']}").items()):
        ax.plot(t, v, label=k, drawstyle="steps-post")
    ax.set_title("Resources by kind and Ready reason")
    ax.set_ylabel("resources")

    ax = axes[0][1]
    for k, v in sorted(rate(data, "alicloud_ops_cloud_api_requests_total", lambda l: f"{l['action']} {l['code']}").items()):
        ax.plot(t, v, label=k)
    ax.set_title("Cloud calls by action and result (rate over 2 s)")
    ax.set_ylabel("calls/s")

    ax = axes[1][0]
    for k, v in sorted(rate(data, "alicloud_ops_reconciles_total", lambda l: l["kind"]).items()):
        ax.plot(t, v, label=f"reconciles {k}")
    for k, v in sorted(rate(data, "alicloud_ops_reconcile_errors_total", lambda l: f"{l['kind']} {l['reason']}").items()):
        ax.plot(t, v, label=f"errors {k}", linestyle="--")
    ax.set_title("Reconcile rate and errors (rate over 2 s)")
    ax.set_ylabel("reconciles/s")

    ax = axes[1][1]
    for name, label in [
        ("alicloud_ops_desktops_in_maintenance", "desktops in maintenance"),
        ("alicloud_ops_ota_pending_approvals", "OTA versions awaiting approval"),
        ("alicloud_ops_leader", "leader"),
    ]:
        total = [sum(vs) for vs in zip(*series(data, name, lambda l: "").values())] or [0.0] * len(t)
        ax.plot(t, total, label=label, drawstyle="steps-post")
    not_ready = series(data, "alicloud_ops_not_ready_since_timestamp_seconds", lambda l: (l["kind"], l["namespace"], l["name"]))
    ax.plot(t, [sum(1 for v in vs if v) for vs in zip(*not_ready.values())] or [0] * len(t), label="resources not Ready", drawstyle="steps-post")
    ax.set_title("Now")

    for row in axes:
        for ax in row:
            ax.set_xlabel("seconds since the operator started")
            ax.legend(fontsize=7, loc="upper left")
            ax.grid(alpha=0.3)
    fig.savefig(png, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
