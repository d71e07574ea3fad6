"""The soak benchmark's verdict, plot and terminal table (``bench.soak`` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import console, print_table

MB = 1024 * 1024


def verdict(out: dict[str, Any], after_min: float) -> dict[str, Any]:
    ss = [s for s in out["samples"] if s["t_min"] >= after_min] or out["samples"]
    total = [(s["delta_bytes"] + s["index_bytes"] + s["kafka_bytes"]) / s["live_bytes"] for s in ss]
    no_index = [(s["delta_bytes"] + s["kafka_bytes"]) / s["live_bytes"] for s in ss]
    qps = [s["qps"] for s in out["samples"]]
    third = max(1, len(qps) // 3)
    first, last = float(np.mean(qps[:third])), float(np.mean(qps[-third:]))
    b = out["baseline"]
    return {
        "after_min": after_min,
        "max_total_over_live": max(total),
        "max_delta_kafka_over_live": max(no_index),
        "max_delta_over_live": max(s["delta_bytes"] / s["live_bytes"] for s in ss),
        "baseline_total_over_live": (b["delta_bytes"] + b["index_bytes"] + b["kafka_bytes"])
        / b["live_bytes"],
        "baseline_index_over_live": b["index_bytes"] / b["live_bytes"],
        "disk_target_met": max(total) <= 2.0,
        "qps_first_third": first,
        "qps_last_third": last,
        "qps_target_met": last >= 0.9 * first,
    }


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ss = out["samples"]
    t = [s["t_min"] for s in ss]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, height_ratios=(2, 1))
    for key, label in (("delta_bytes", "Delta tables"), ("index_bytes", "indexes"), ("kafka_bytes", "Kafka")):
        ax.plot(t, [s[key] / MB for s in ss], label=label)
    ax.plot(
        t, [(s["delta_bytes"] + s["index_bytes"] + s["kafka_bytes"]) / MB for s in ss], "k", label="total"
    )
    ax.plot(t, [2 * s["live_bytes"] / MB for s in ss], "k--", label="2 x live data")
    ax.set_ylabel("MB on disk")
    ax.legend(loc="upper left", fontsize=8)
    a = out["args"]
    ax.set_title(f"walvus soak: {a['keys']:,} keys, {a['dim']}-d, {a['rate']:g} rows/s upserts+deletes")
    bx.plot(t, [s["qps"] for s in ss], "tab:purple")
    bx.set_ylabel("search QPS (nq=1, Bounded)")
    bx.set_xlabel("minutes")
    bx.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(out: dict[str, Any]) -> None:
    ss = out["samples"]
    step = max(1, len(ss) // 15)
    rows = [
        [
            f"{s['t_min']:.1f}",
            s["delta_bytes"] / MB,
            s["index_bytes"] / MB,
            s["kafka_bytes"] / MB,
            s["live_bytes"] / MB,
            (s["delta_bytes"] + s["index_bytes"] + s["kafka_bytes"]) / s["live_bytes"],
            f"{s['stored_rows']:,} / {s['live_rows']:,}",
            s["tombstones"],
            s["qps"],
            s["load_avg"],
        ]
        for s in ss[step - 1 :: step]
    ]
    print_table(
        "soak: disk (MB, allocated) and search QPS",
        [
            "min",
            "Delta",
            "indexes",
            "Kafka",
            "live",
            "total/live",
            "stored/live rows",
            "tombstones",
            "QPS",
            "load",
        ],
        rows,
    )
    v = out["verdict"]
    console.print(
        f"after minute {v['after_min']:g}: total disk <= {v['max_total_over_live']:.2f} x live "
        f"(Delta+Kafka {v['max_delta_kafka_over_live']:.2f} x, Delta {v['max_delta_over_live']:.2f} x; "
        f"one compacted copy + its index at the start: {v['baseline_total_over_live']:.2f} x) -> disk target "
        f"{'met' if v['disk_target_met'] else 'NOT met'}; QPS first third {v['qps_first_third']:.0f}, last third "
        f"{v['qps_last_third']:.0f} -> QPS target {'met' if v['qps_target_met'] else 'NOT met'}"
    )
