"""Tables and the plot that ``python -m bench.search`` prints and saves."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import Dataset
from bench.harness import console, print_table
from bench.peers import (
    EF_CONSTRUCTION,
    EF_SEARCH,
    METRIC,
    TOP_K,
    M,
)


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def report(results: list[dict[str, Any]], ds: Dataset, args: argparse.Namespace) -> None:
    console.print(
        f"\n[bold]Data: {ds.description}[/] - {len(ds.base):,} x {ds.dim}, {len(ds.queries):,} queries "
        f"from the same mixture, exact top-{TOP_K} ground truth. Index HNSW M={M} efConstruction="
        f"{EF_CONSTRUCTION}, ef={EF_SEARCH}, {METRIC}, top-k {TOP_K}. {os.cpu_count()} CPUs."
    )
    print_table(
        "search: setup (ready = insert + flush + index + load)",
        [
            "target",
            "index actually used",
            "insert rows/s",
            "flush s",
            "index s",
            "load s",
            "ready s",
            "recall@10",
            "load 1m",
        ],
        [
            [
                r["target"],
                r.get("index_used", r.get("error", "-")),
                _f(r.get("stats", {}).get("insert_rows_s"), "{:,.0f}"),
                _f(r.get("stats", {}).get("flush_s")),
                _f(r.get("stats", {}).get("index_s")),
                _f(r.get("stats", {}).get("load_s")),
                _f(r.get("ready_s")),
                _f(r.get("recall_at_10"), "{:.4f}"),
                _f(r["load_avg_before"][0]),
            ]
            for r in results
        ],
    )
    faiss_qps = {
        (s["nq"], s["threads"]): s["qps"]
        for r in results
        if r["target"] == "faiss"
        for s in r.get("search", [])
    }
    rows = []
    for r in results:
        for s in r.get("search", []):
            base = faiss_qps.get((s["nq"], s["threads"]))
            rows.append(
                [
                    r["target"],
                    s["nq"],
                    f"{s['threads']} {'proc' if s.get('clients') == 'processes' else 'thr'}",
                    s["consistency_label"],
                    _f(s["qps"], "{:,.1f}"),
                    _f(s["calls_s"], "{:,.1f}"),
                    _f(s["p50_ms"], "{:.2f}"),
                    _f(s["p99_ms"], "{:.2f}"),
                    _f(s["mean_ms"], "{:.2f}"),
                    _f(s.get("server_mean_ms"), "{:.2f}"),
                    "-" if not base or r["target"] == "faiss" else f"{s['qps'] / base:.3f}",
                    s["errors"],
                    _f(s.get("load_avg_1m")),
                ]
            )
    print_table(
        f"search: QPS (query vectors/s) and latency, ~{args.seconds:g} s per row",
        [
            "target",
            "nq",
            "clients",
            "consistency",
            "QPS",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "mean ms",
            "server mean ms",
            "x faiss",
            "errors",
            "load 1m",
        ],
        rows,
    )
    console.print(
        "server mean ms: time walvus's gateway itself spent per Search (its /metrics histogram); the rest of "
        "the mean is client + gRPC. load 1m: the machine's 1-minute load average as the row started "
        f"({os.cpu_count()} CPUs; anything else running on the machine shares them)."
    )
    print_table(
        "freshness: insert one row, Strong-search its vector until returned (ms from the insert call)",
        [
            "target",
            "trials",
            "visible",
            "timeouts",
            "p50 ms",
            "p99 ms",
            "max ms",
            "insert ack p50 ms",
            "searches/trial",
        ],
        [
            [
                r["target"],
                f["trials"],
                f["visible"],
                f["timeouts"],
                _f(f["p50_ms"]),
                _f(f["p99_ms"]),
                _f(f["max_ms"]),
                _f(f["insert_ack_p50_ms"]),
                _f(f["searches_per_trial_mean"]),
            ]
            for r in results
            if (f := r.get("freshness"))
        ],
    )
    walvus = next((r for r in results if r["target"] == "walvus" and r.get("search")), None)
    if walvus and faiss_qps:
        ratios = [
            f"nq={s['nq']} t={s['threads']} {s['consistency']}: {s['qps'] / faiss_qps[(s['nq'], s['threads'])]:.3f}"
            for s in walvus["search"]
            if (s["nq"], s["threads"]) in faiss_qps
        ]
        console.print("[bold]walvus / faiss QPS:[/] " + "; ".join(ratios))
    for r in results:
        for note in r.get("notes", []):
            console.print(f"note ({r['target']}): {note}")
        if r.get("error"):
            console.print(f"[red]{r['target']} failed: {r['error']}")
        scan = r.get("log_scan")
        if scan and scan["count"]:
            console.print(f"[yellow]{r['target']} logs: {scan['count']} ERROR/Traceback lines, e.g.:")
            for line in scan["first"]:
                console.print(f"  {line}")


def plot(results: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib not installed (requirements-bench.lock): no plot")
        return None
    labels: list[str] = []
    for r in results:
        for s in r.get("search", []):
            key = f"nq={s['nq']}\n{s['threads']} client(s)\n{s['consistency']}"
            if key not in labels:
                labels.append(key)
    targets = [r for r in results if r.get("search")]
    if not targets:
        return None
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / len(targets)
    x = np.arange(len(labels))
    for i, r in enumerate(targets):
        by = {f"nq={s['nq']}\n{s['threads']} client(s)\n{s['consistency']}": s["qps"] for s in r["search"]}
        vals = [by.get(lab, np.nan) for lab in labels]
        bars = ax.bar(x + (i - (len(targets) - 1) / 2) * width, vals, width, label=r["target"])
        for b, v in zip(bars, vals, strict=True):
            if v == v and v > 0:
                ax.annotate(
                    f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=6
                )
    ax.set_yscale("log")
    ax.set_xticks(x, [lab.replace("Strong", "Strong*") for lab in labels], fontsize=8)
    ax.set_ylabel("QPS (query vectors/s, log scale)")
    ax.set_title(
        f"Search QPS, HNSW M={M} efC={EF_CONSTRUCTION} ef={EF_SEARCH} {METRIC} top-{TOP_K}, "
        "synthetic clustered data\n(*faiss and grpc-floor have no consistency; milvus-lite ignores it)",
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
