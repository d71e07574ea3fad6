"""Search: QPS, latency, recall and freshness of walvus beside raw FAISS, milvus-lite and Milvus 2.3.5.

    python -m bench.search [--rows 100000] [--dim 128] [--targets walvus,faiss,floor,milvus-lite,milvus]
                           [--seconds 10] [--fresh-trials 100] [--keep]

Data: SYNTHETIC CLUSTERED vectors (``bench.datasets.clustered``: a seeded Gaussian mixture of
1,000 anisotropic clusters, L2-normalised), 1,000 queries drawn from the same mixture (not
from the base set), ground truth the exact top-10 by inner product (faiss IndexFlatIP).

``floor`` is no database: gRPC servers built like walvus's gateway whose Search answers a
prepared response (``bench.floor``), so its QPS is what pymilvus and Python gRPC alone allow
on this machine. No recall or freshness for it.

Every other target gets the same index and parameters: HNSW M=16, efConstruction=200, search
ef=64, metric COSINE, top-k 10. For each one, in the same run:

- ready time: insert (batches of 10k rows, rows/s) + flush + index build + load;
- search QPS and p50/p99 latency at nq=1 and nq=100, with 1 and 4 clients (each its own
  pymilvus client; 4 client *processes* against the servers that run apart, walvus and
  Milvus, 4 threads for milvus-lite and FAISS, which live in this process), for ``--seconds``
  each, under Strong consistency; walvus and Milvus also under Bounded at nq=1 (milvus-lite
  ignores consistency, faiss has none); walvus runs 2 gateway processes (``--gateway-processes``);
- recall@10 over all 1,000 queries (batches of 100, Strong);
- freshness: insert one new row, then Strong-search its vector until it comes back
  (p50/p99 over ``--fresh-trials`` trials, each capped at ``--fresh-cap`` seconds).

QPS counts query vectors per second (nq=100 at 5 calls/s is 500 QPS). The walvus/faiss
ratio compares QPS at the same nq and thread count. Results: tables on the terminal,
``bench/results/search.json`` and ``bench/results/search_qps.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time
import traceback
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.datasets import DATA_DIR, Dataset, recall_at_k
from bench.harness import RESULTS, clustered_dataset, console, save, wanted_targets
from bench.peers import (
    TOP_K,
    FaissPeer,
    FloorPeer,
    MilvusLitePeer,
    MilvusPeer,
    Peer,
    PymilvusPeer,
    WalvusPeer,
    close_peer,
    run_params,
)
from bench.search_report import plot, report

# walvus-1s / walvus-2s: the same walvus with its reads served by 1 or 2 ``walvus searcher``
# processes (one shard each) behind the gateway, beside the searcher inside the gateway (walvus)
TARGETS = ("faiss", "floor", "walvus", "walvus-1s", "walvus-2s", "milvus-lite", "milvus")
FRESH_ID = 1_000_000_000  # ids of freshness rows: far above the base set's row numbers


def settings_for(peer: Peer) -> list[tuple[int, int, str]]:
    """(nq, threads, consistency) for one target."""
    base = [(1, 1, "Strong"), (1, 4, "Strong"), (100, 1, "Strong"), (100, 4, "Strong")]
    if peer.honours_consistency:
        base += [(1, 1, "Bounded"), (1, 4, "Bounded")]
    return base


def consistency_label(peer: Peer, consistency: str) -> str:
    if isinstance(peer, FaissPeer) or not peer.answers_queries:
        return "n/a"
    return consistency if peer.honours_consistency else f"{consistency} (ignored)"


# measurements -----------------------------------------------------------------------------
def measure(
    peer: Peer, queries: list, nq: int, threads: int, consistency: str, seconds: float
) -> dict[str, Any]:
    """Closed-loop load: ``threads`` clients each searching ``nq`` queries per call for ``seconds``.

    Against a server other processes can reach (``peer.remote_uri``), concurrent clients are
    processes, as separate users would be; otherwise (raw FAISS, milvus-lite in this process)
    they are threads of this process.
    """
    remote = threads > 1 and peer.remote_uri is not None
    load1 = os.getloadavg()[0]
    server0 = peer.server_search_seconds()
    if remote:
        lat, errors, elapsed = _client_processes(peer, queries, nq, threads, consistency, seconds)
    else:
        lat, errors, elapsed = _client_threads(peer, queries, nq, threads, consistency, seconds)
    server1 = peer.server_search_seconds()
    server_ms = None
    if server0 and server1 and server1[1] > server0[1]:
        server_ms = (server1[0] - server0[0]) / (server1[1] - server0[1]) * 1000
    all_lat = np.array(lat) * 1000
    calls = len(all_lat)
    return {
        "nq": nq,
        "threads": threads,
        "clients": "processes" if remote else "threads",
        "consistency": consistency,
        "seconds": elapsed,
        "calls": calls,
        "calls_s": calls / elapsed,
        "qps": calls * nq / elapsed,
        "p50_ms": float(np.percentile(all_lat, 50)) if calls else None,
        "p99_ms": float(np.percentile(all_lat, 99)) if calls else None,
        "mean_ms": float(all_lat.mean()) if calls else None,
        "server_mean_ms": server_ms,
        "load_avg_1m": load1,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def _client_loop(
    peer: Peer, queries: list, nq: int, consistency: str, seed: int, start: Any, stop: Any
) -> tuple[list[float], list[str]]:
    """Warm up, wait for ``start()``, then search random slices until ``stop()``."""
    lat: list[float] = []
    errors: list[str] = []
    rng = np.random.default_rng(seed)
    for w in range(3):  # warm-up: connections, caches
        try:
            peer.search(queries[w * nq : w * nq + nq], nq, consistency)
        except Exception as exc:
            errors.append(f"warm-up: {exc!r}")
    start()
    while not stop():
        first = int(rng.integers(0, len(queries) - nq + 1))
        t0 = time.perf_counter()
        try:
            peer.search(queries[first : first + nq], nq, consistency)
        except Exception as exc:
            errors.append(repr(exc))
            if len(errors) > 50:
                break
            continue
        lat.append(time.perf_counter() - t0)
    return lat, errors


def _client_threads(
    peer: Peer, queries: list, nq: int, threads: int, consistency: str, seconds: float
) -> tuple[list[float], list[str], float]:
    handles = [peer] + [peer.clone() for _ in range(threads - 1)]
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    out: list[tuple[list[float], list[str]]] = [([], [])] * threads

    def worker(i: int) -> None:
        out[i] = _client_loop(handles[i], queries, nq, consistency, 1000 + i, barrier.wait, stop.is_set)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for t in pool:
        t.join(120)
    elapsed = time.perf_counter() - t0
    for h in handles[1:]:
        h.close()
    return [x for lat, _ in out for x in lat], [e for _, errs in out for e in errs], elapsed


def _client_processes(
    peer: Peer, queries: list, nq: int, procs: int, consistency: str, seconds: float
) -> tuple[list[float], list[str], float]:
    ctx = mp.get_context("spawn")  # a fresh interpreter: no gRPC state crosses a fork
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    pool = [
        ctx.Process(
            target=_client_process,
            args=(peer.remote_uri, queries, nq, consistency, seconds, 1000 + i, ready, go, results),
            daemon=True,
        )
        for i in range(procs)
    ]
    for p in pool:
        p.start()
    for _ in pool:
        ready.get(timeout=300)
    go.set()
    got = [results.get(timeout=seconds + 300) for _ in pool]
    for p in pool:
        p.join(30)
    elapsed = max(g[2] for g in got)  # the longest of the processes' measured windows
    return [x for g in got for x in g[0]], [e for g in got for e in g[1]], elapsed


def _client_process(
    uri: str, queries: list, nq: int, consistency: str, seconds: float, seed: int, ready, go, results
) -> None:
    """One benchmark client in its own process: a pymilvus client of its own on ``uri``."""
    from pymilvus import MilvusClient

    peer = PymilvusPeer(MilvusClient(uri, dedicated=True))
    began: list[float] = []

    def start() -> None:
        ready.put(seed)
        go.wait()
        began.append(time.perf_counter())

    lat, errors = _client_loop(
        peer, queries, nq, consistency, seed, start, lambda: time.perf_counter() - began[0] > seconds
    )
    results.put((lat, errors, time.perf_counter() - began[0]))
    peer.close()


def recall(peer: Peer, ds: Dataset, queries: list, consistency: str = "Strong") -> float:
    found: list[list[int]] = []
    for start in range(0, len(queries), 100):
        found += peer.search(queries[start : start + 100], len(queries[start : start + 100]), consistency)
    return recall_at_k(found, ds.gt, TOP_K)


def freshness(peer: Peer, ds: Dataset, trials: int, cap: float, budget: float) -> dict[str, Any]:
    """Insert one row, then Strong-search its vector until it is returned (ms from the insert call)."""
    visible, acks, attempts, timeouts, errors = [], [], [], 0, []
    began = time.perf_counter()
    for i in tqdm(
        range(min(trials, len(ds.extra))), desc=f"{peer.name} freshness", unit="trial", leave=False
    ):
        if time.perf_counter() - began > budget:
            break
        vid, vec = FRESH_ID + i, ds.extra[i : i + 1]
        qvec = vec.tolist()
        t0 = time.perf_counter()
        try:
            peer.insert(np.array([vid]), vec)
        except Exception as exc:
            errors.append(f"insert: {exc!r}")
            continue
        acks.append(time.perf_counter() - t0)
        tries = 0
        while True:
            tries += 1
            try:
                ids = peer.search(qvec, 1, "Strong")
                if ids and vid in ids[0]:
                    visible.append(time.perf_counter() - t0)
                    break
            except Exception as exc:
                errors.append(f"search: {exc!r}")
            if time.perf_counter() - t0 > cap:
                timeouts += 1
                break
        attempts.append(tries)
    v = np.array(visible) * 1000
    return {
        "trials": len(acks),
        "visible": len(visible),
        "timeouts": timeouts,
        "cap_s": cap,
        "p50_ms": float(np.percentile(v, 50)) if len(v) else None,
        "p99_ms": float(np.percentile(v, 99)) if len(v) else None,
        "max_ms": float(v.max()) if len(v) else None,
        "insert_ack_p50_ms": float(np.percentile(np.array(acks) * 1000, 50)) if acks else None,
        "searches_per_trial_mean": float(np.mean(attempts)) if attempts else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


# one target -------------------------------------------------------------------------------
def make_peer(name: str, args: argparse.Namespace) -> Peer:
    if name == "faiss":
        return FaissPeer()
    if name == "floor":
        floor = FloorPeer()
        floor.start(processes=args.gateway_processes)
        return floor
    if name == "walvus" or name.startswith("walvus-"):
        peer = WalvusPeer()
        searchers = int(name.removeprefix("walvus-").removesuffix("s")) if name != "walvus" else 0
        peer.start(keep=args.keep, gateway_processes=args.gateway_processes, searchers=searchers)
        return peer
    if name == "milvus-lite":
        peer = MilvusLitePeer()
        peer.start()
        return peer
    if name == "milvus":
        peer = MilvusPeer()
        peer.start(DATA_DIR / "milvus-2.3.5", keep=args.keep)
        return peer
    raise SystemExit(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")


def run_target(name: str, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name, "load_avg_before": os.getloadavg()}
    console.rule(f"[bold]{name}")
    queries = ds.queries.tolist()
    peer: Peer | None = None
    try:
        t0 = time.perf_counter()
        peer = make_peer(name, args)
        out["start_s"] = time.perf_counter() - t0
        console.print(f"{name}: started in {out['start_s']:.1f} s; building (insert, flush, index, load) ...")
        ready = peer.setup(ds.base)
        out.update(ready_s=ready, index_used=peer.index_used)
        console.print(f"{name}: ready in {ready:.1f} s, index {peer.index_used}")
        if peer.answers_queries:
            out["recall_at_10"] = recall(peer, ds, queries)
            console.print(f"{name}: recall@10 {out['recall_at_10']:.4f}")
        rows = []
        bar = tqdm(settings_for(peer), desc=f"{name} search", unit="setting", leave=False)
        for nq, threads, cons in bar:
            bar.set_postfix_str(f"nq={nq} threads={threads} {cons}")
            r = measure(peer, queries, nq, threads, cons, args.seconds)
            r["consistency_label"] = consistency_label(peer, cons)
            rows.append(r)
            if r["errors"]:
                console.print(
                    f"[red]{name} nq={nq} threads={threads} {cons}: {r['errors']} errors, first: {r['first_error']}"
                )
        out["search"] = rows
        if peer.answers_queries:
            out["freshness"] = freshness(peer, ds, args.fresh_trials, args.fresh_cap, args.fresh_budget)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
        console.print(f"[red]{name} failed: {out['error']}")
        console.print(out["traceback"])
    finally:
        if peer is not None:
            close_peer(peer, out)
    return out


# report -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--targets", default="walvus,faiss,floor,milvus-lite,milvus")
    ap.add_argument("--seconds", type=float, default=10.0, help="per search measurement")
    ap.add_argument("--fresh-trials", type=int, default=100)
    ap.add_argument("--fresh-cap", type=float, default=10.0, help="seconds before a trial is a timeout")
    ap.add_argument("--fresh-budget", type=float, default=90.0, help="seconds of freshness trials per target")
    ap.add_argument("--keep", action="store_true", help="keep walvus and Milvus data and logs")
    ap.add_argument("--gateway-processes", type=int, default=2, help="walvus gateway processes on the port")
    args = ap.parse_args()
    wanted = wanted_targets(args.targets, TARGETS)
    order = [t for t in TARGETS if t in wanted]  # faiss first: its QPS is the reference

    began = time.perf_counter()
    ds = clustered_dataset(args.rows, args.dim)
    results = [run_target(name, ds, args) for name in order]
    total = time.perf_counter() - began
    report(results, ds, args)
    png = plot(results, RESULTS / "search_qps.png")
    path = save(
        "search",
        {
            "dataset": ds.summary(),
            "params": run_params(seconds=args.seconds),
            "cpus": os.cpu_count(),
            "total_s": total,
            "targets": results,
        },
    )
    console.print(f"saved {path}" + (f" and {png}" if png else "") + f"; whole run {total / 60:.1f} min")


if __name__ == "__main__":
    main()
