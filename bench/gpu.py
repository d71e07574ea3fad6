"""GPU indexes: GPU_IVF_FLAT, GPU_IVF_PQ, GPU_CAGRA and GPU_BRUTE_FORCE beside CPU HNSW, one machine.

    python -m bench.gpu [--rows 1000000] [--dim 128] [--nq 1000] [--target 0.95] [--cpu-only]
                        [--types GPU_IVF_FLAT,GPU_IVF_PQ,GPU_CAGRA,GPU_BRUTE_FORCE] [--out PATH]

Runs on the device machine (numpy and a GPU build of faiss, no network; ``bench/gpu_stage.sh``
stages the wheels) and, with ``--cpu-only``, anywhere (GPU types reported as unavailable).

Data: ``--rows`` x ``--dim`` SYNTHETIC CLUSTERED vectors (the Gaussian mixture of
``bench.datasets``, 1,000 anisotropic clusters, L2-normalised, seed 7), ``--nq`` queries from the
same mixture; ground truth the exact top-10 by L2 (= by inner product: unit vectors), computed
with ``faiss.knn_gpu`` on a GPU, else ``faiss.knn``. Every index is built and searched through
walvus's own code (``VectorIndex.build``; GPU search through ``indexer.gpu.place_for_search``),
metric L2, top-k 10:

- CPU HNSW: M=16, efConstruction=200, searched on the CPU, ef swept;
- GPU_IVF_FLAT nlist=1024 and GPU_IVF_PQ nlist=1024 m=64 nbits=8, nprobe swept;
- GPU_CAGRA with Milvus's defaults (intermediate_graph_degree 128, graph_degree 64), itopk_size
  swept, and the same graph searched on the CPU as HNSW (walvus's CPU fallback);
- GPU_BRUTE_FORCE (exact).

Build seconds are what walvus's indexer spends (GPU build plus the CPU copy it stores), and
``to_gpu_s`` what a searcher spends moving the stored copy back to the GPU. For each index the
sweep stops at the first search param whose recall@10 over all queries reaches ``--target``;
QPS at nq=1 (one query per call, ``--nq1-queries`` calls) and nq=100 (all queries in calls of
100) is measured there. QPS counts query vectors per second. Results: a table on the terminal
and ``bench/results/gpu.json``; ``python -m bench.gpu --table bench/results/gpu.json`` prints the
README's "GPU indexes" table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.datasets import fresh_vectors
from indexer.gpu import place_for_search
from indexer.index import VectorIndex
from schemas.index_spec import IndexSpec
from walvus.gpu import gpu_available

OUT = Path(__file__).parent / "results" / "gpu.json"
K = 10
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_SWEEP = ("ef", (10, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024))
GPU_PARAMS = {
    "GPU_IVF_FLAT": {"nlist": 1024},
    "GPU_IVF_PQ": {"nlist": 1024, "m": 64, "nbits": 8},
    "GPU_CAGRA": {"intermediate_graph_degree": 128, "graph_degree": 64},
    "GPU_BRUTE_FORCE": {},
}
SWEEPS: dict[str, tuple[str, tuple[int, ...]] | None] = {
    "GPU_IVF_FLAT": ("nprobe", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
    "GPU_IVF_PQ": ("nprobe", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
    "GPU_CAGRA": ("itopk_size", (16, 32, 64, 96, 128, 256, 512)),
    "GPU_BRUTE_FORCE": None,
}


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def ground_truth(base: np.ndarray, queries: np.ndarray, on_gpu: bool) -> np.ndarray:
    if on_gpu:
        _, ids = faiss.knn_gpu(faiss.StandardGpuResources(), queries, base, K)
    else:
        _, ids = faiss.knn(queries, base, K)
    return ids.astype(np.int64)


def recall(labels: np.ndarray, gt: np.ndarray) -> float:
    hits = sum(len(set(row.tolist()) & set(truth.tolist())) for row, truth in zip(labels, gt, strict=True))
    return hits / gt.size


def qps(index: VectorIndex, queries: np.ndarray, params: dict[str, Any], nq: int, calls: int) -> float:
    index.search(queries[: min(nq, 10)], K, params)  # warm up
    batches = [queries[i : i + nq] for i in range(0, len(queries), nq)][:calls]
    t0 = time.perf_counter()
    for batch in batches:
        index.search(batch, K, params)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def measure(
    name: str,
    spec: IndexSpec,
    base: np.ndarray,
    queries: np.ndarray,
    gt: np.ndarray,
    sweep: tuple[str, tuple[int, ...]] | None,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Build once; one row searched where walvus would search it, one more for CAGRA on the CPU."""
    t0 = time.perf_counter()
    built = VectorIndex.build(spec, base)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gpu = place_for_search(spec, built.faiss_index, "auto")
    to_gpu_s = time.perf_counter() - t0
    index = VectorIndex(spec, built.faiss_index, built.notes, gpu=gpu)
    common = {"params": dict(spec.params), "build_s": round(build_s, 2)}
    rows = [{"index": name, **common, "to_gpu_s": round(to_gpu_s, 3) if gpu is not None else None}]
    rows[0].update(sweep_and_time(index, spec, queries, gt, sweep, args))
    if gpu is not None and spec.index_type == "GPU_CAGRA":  # the CPU fallback of the same graph
        cpu = VectorIndex(spec, built.faiss_index, built.notes)
        rows.append({"index": f"{name} as HNSW", **common, "to_gpu_s": None})
        rows[1].update(sweep_and_time(cpu, spec, queries, gt, ("itopk_size", HNSW_SWEEP[1]), args))
    return rows


def sweep_and_time(
    index: VectorIndex,
    spec: IndexSpec,
    queries: np.ndarray,
    gt: np.ndarray,
    sweep: tuple[str, tuple[int, ...]] | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    row: dict[str, Any] = {"searched_on": index.device, "sweep": []}
    name_values = [(None, None)] if sweep is None else [(sweep[0], v) for v in sweep[1]]
    chosen: dict[str, Any] = {}
    for pname, value in name_values:
        if pname == "nprobe" and value > int(spec.params["nlist"]):
            break
        params = {} if pname is None else {pname: value}
        _, labels = index.search(queries, K, params)
        r = recall(labels, gt)
        row["sweep"].append({"param": params, "recall": round(r, 4)})
        chosen = params
        if r >= args.target:
            break
    row["search_params"] = chosen
    row["recall"] = row["sweep"][-1]["recall"]
    row["reached_target"] = row["recall"] >= args.target
    row["qps_nq1"] = round(qps(index, queries, chosen, 1, args.nq1_queries), 1)
    row["qps_nq100"] = round(qps(index, queries, chosen, 100, len(queries)), 1)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'index':<16} {'on':<4} {'build s':>8} {'param':<18} {'recall':>7} {'QPS nq=1':>9} {'QPS nq=100':>10}"
    )
    for r in rows:
        if r.get("status"):
            print(f"{r['index']:<16} {'-':<4} {r['status']}: {r['reason']}")
            continue
        param = ",".join(f"{k}={v}" for k, v in r["search_params"].items()) or "-"
        print(
            f"{r['index']:<16} {r['searched_on']:<4} {r['build_s']:>8.1f} {param:<18} {r['recall']:>7.3f} "
            f"{r['qps_nq1']:>9.0f} {r['qps_nq100']:>10.0f}"
        )


def markdown(report: dict[str, Any]) -> str:
    """The README's "GPU indexes" table from a gpu.json report."""
    m = report["machine"]
    lines = [
        f"{report['rows']:,} x {report['dim']} ({report['dataset']}), top-{report['k']}, "
        f"{report['nq']} queries; {m.get('gpu_name') or 'no GPU'}, {m['cpus']} CPUs, faiss {m['faiss']}",
        "",
        "| index | searched on | build s | search param | recall@10 | QPS nq=1 | QPS nq=100 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r.get("status"):
            lines.append(f"| {r['index']} | {r['status']}: {r['reason']} | | | | | |")
            continue
        param = ", ".join(f"{k}={v}" for k, v in r["search_params"].items()) or "-"
        missed = "" if r["reached_target"] else " (below target)"
        lines.append(
            f"| {r['index']} | {r['searched_on']} | {r['build_s']:.1f} | {param} | {r['recall']:.3f}{missed} "
            f"| {r['qps_nq1']:,.0f} | {r['qps_nq100']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--nq", type=int, default=1_000)
    ap.add_argument("--nq1-queries", type=int, default=1_000, help="calls timed at nq=1")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 each index must reach")
    ap.add_argument("--types", default=",".join(GPU_PARAMS), help="GPU index types to run")
    ap.add_argument("--cpu-only", action="store_true", help="skip GPU types (reported as unavailable)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--table", type=Path, help="print the README table (markdown) of this gpu.json and exit")
    args = ap.parse_args(argv)
    if args.table is not None:
        report = json.loads(args.table.read_text())
        print(markdown(report))
        return report

    on_gpu = not args.cpu_only and gpu_available()
    sample = fresh_vectors(args.dim, stream=1)
    base = sample(args.rows)
    queries = fresh_vectors(args.dim, stream=2)(args.nq)
    t0 = time.perf_counter()
    gt = ground_truth(base, queries, on_gpu)
    print(f"data {args.rows}x{args.dim}, {args.nq} queries, ground truth {time.perf_counter() - t0:.1f}s")

    report: dict[str, Any] = {
        "dataset": f"synthetic clustered, {args.rows}x{args.dim}, L2-normalised, seed 7",
        "rows": args.rows,
        "dim": args.dim,
        "nq": args.nq,
        "k": K,
        "target_recall": args.target,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "gpus": int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0,
            "gpu_name": gpu_name(),
        },
        "results": [],
    }
    rows: list[dict[str, Any]] = report["results"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    hnsw = IndexSpec.parse("HNSW", "L2", HNSW_PARAMS, args.dim)
    for itype in ["HNSW", *[t.strip().upper() for t in args.types.split(",") if t.strip()]]:
        if itype != "HNSW" and itype not in GPU_PARAMS:
            raise SystemExit(f"unknown GPU index type {itype}; use {', '.join(GPU_PARAMS)}")
        try:
            if itype == "HNSW":
                rows += measure("HNSW (CPU)", hnsw, base, queries, gt, HNSW_SWEEP, args)
            elif not on_gpu:
                reason = "--cpu-only" if args.cpu_only else "no GPU seen by faiss"
                rows.append({"index": itype, "status": "unavailable", "reason": reason})
            else:
                spec = IndexSpec.parse(itype, "L2", GPU_PARAMS[itype], args.dim)
                rows += measure(itype, spec, base, queries, gt, SWEEPS[itype], args)
        except Exception as exc:  # one failing index must not lose the others' numbers
            rows.append({"index": itype, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        args.out.write_text(json.dumps(report, indent=2))  # partial results survive a time limit
        print(f"done {itype}: {rows[-1].get('status') or rows[-1]['searched_on']}", flush=True)

    print()
    print_table(rows)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
