"""Streaming: search QPS, latency, recall, freshness and memory while rows keep arriving.

    python -m bench.streaming [--rows 100000] [--dim 128] [--targets walvus,walvus-nointerim,milvus]
                              [--rates 500,1000] [--clients 1,4] [--phase-seconds 150]
                              [--static-seconds 30] [--window 15] [--recall-samples 50] [--keep]

The VectorDBBench "streaming" case. Per target, one server at a time:

1. Load ``--rows`` base rows (SYNTHETIC CLUSTERED vectors from ``bench.datasets.clustered``, ids
   0..rows-1) with HNSW M=16 efConstruction=200, COSINE: insert, flush, index, load.
2. Static phases: no writes; for each ``--clients`` count, ``--static-seconds`` of searches.
3. Streaming phases, all in ONE continuous stream (no reload between them): for each rate in
   ``--rates`` and each client count in ``--clients``, ``--phase-seconds`` of searches while a
   producer thread inserts fresh rows from the same mixture (ids from ``rows`` up) in 100-row
   writes on a fixed schedule of rate/100 writes per second. A write that returns late does not
   make later ones burst; the rows the schedule gave up are counted (``skipped_rows``).
4. Sealed: stop writing, flush, wait until growing rows are 0 and the index has no pending rows,
   settle ``--settle`` s, then measure memory again.

Searches: nq=1, top-10, ef=64, random queries of the 1,000-query set, each client its own
process with its own pymilvus client, closed loop. ``walvus`` and ``walvus-nointerim`` (walvus
with the collection property ``interim_index.enabled=false``, set before any insert) search
at Strong; ``milvus`` (Milvus 2.3.5 embedded) at Strong for the first half of every phase and
Bounded for the second half; every window is labelled with its level.

Per ``--window`` seconds (each phase, or half phase, is cut into equal windows):

- QPS (searches sent in the window / its length), p50/p99 latency, errors;
- recall@10 of up to ``--recall-samples`` of the window's searches, against the exact top-10 by
  inner product (faiss ``IndexFlatIP``, unit vectors, so = COSINE) over the base rows plus every
  row acknowledged BEFORE that search was sent (streamed and freshness rows; ack times are
  recorded here, send times and returned ids come back from the client processes; computed
  after the target is closed);
- ingest: rows/s acknowledged in the window;
- growing rows (the last sample in the window, about one per second): walvus's
  ``get_collection_stats()["growing_rows"]``; for Milvus, whose GetQuerySegmentInfo
  (``list_loaded_segments``) lists only sealed segments, every acknowledged row minus the rows
  of the loaded sealed segments;
- RSS: the largest total over the window of every server process under this one (walvus:
  Kafka broker, streams, indexer, gateway and its sibling gateways; Milvus: its one binary), from
  /proc VmRSS; the per-process split (processes of one name summed: both gateway processes are
  "gateway") is in the JSON and, for loaded / streaming peak / sealed, on the terminal;
- freshness (streaming only): about once a second one marked row is inserted and its vector is
  Strong-searched in a loop until it is returned; ack -> visible p50/p99 of the trials acked in
  the window (a trial not visible within ``--fresh-cap`` s is a timeout). The probe runs in this
  process beside the producer, so its searches are an extra client.

Verdict lines judge each walvus target over its windows at 1,000 rows/s: QPS >= 0.8 x its static
QPS (same clients) and above Milvus Bounded (mean of Milvus's Bounded windows, same rate and
clients); recall@10 >= 0.95; freshness p99 <= 100 ms with no timeouts; peak RSS while streaming
<= 1.5 x RSS once sealed. With the defaults a target takes roughly 13-15 minutes (setup, 1 min
static, 10 min streaming, sealing, ground truth), so three targets take about 45 minutes.

Results: tables and verdict lines on the terminal, ``bench/results/streaming.json`` (every window
of every target) and ``bench/results/streaming_qps.png``. Not a timed test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from typing import Any

from tqdm import tqdm

from bench.datasets import DATA_DIR, Dataset, fresh_vectors
from bench.harness import RESULTS, clustered_dataset, console, save, wanted_targets
from bench.peers import (
    COLLECTION,
    MilvusPeer,
    PymilvusPeer,
    WalvusPeer,
    close_peer,
    run_params,
)
from bench.streaming_load import (
    MB,
    AckLog,
    ClientRun,
    FreshnessProbe,
    Monitor,
    StreamProducer,
    growing_rows,
    run_clients,
)
from bench.streaming_report import attach_recall, plot, report, windows

TARGETS = ("walvus", "walvus-nointerim", "milvus")


def make_peer(name: str, args: argparse.Namespace) -> PymilvusPeer:
    if name.startswith("walvus"):
        peer = WalvusPeer()
        peer.name = name
        if name == "walvus-nointerim":
            peer.collection_properties = {"interim_index.enabled": "false"}
            peer.notes.append("collection property interim_index.enabled=false, set before inserting")
        peer.start(keep=args.keep, gateway_processes=args.gateway_processes)
        return peer
    if name == "milvus":
        peer = MilvusPeer()
        peer.start(DATA_DIR / "milvus-2.3.5", keep=args.keep)
        return peer
    raise SystemExit(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")


def plan(args: argparse.Namespace) -> list[tuple[str, int, int, float]]:
    """(kind, rate, clients, seconds) of every phase, in order."""
    static = [("static", 0, c, args.static_seconds) for c in args.clients]
    return static + [("stream", r, c, args.phase_seconds) for r in args.rates for c in args.clients]


def _progress(label: str, monitor: Monitor, producer: StreamProducer, first_id: int) -> Any:
    def wait(start: float, seconds: float) -> None:
        with tqdm(total=int(seconds), desc=label, unit="s", leave=False) as bar:
            for i in range(int(seconds)):
                time.sleep(max(0.0, start + i + 1 - time.monotonic()))
                last = monitor.samples[-1] if monitor.samples else {}
                bar.set_postfix(
                    streamed=producer.next_id - first_id,
                    growing=last.get("growing_rows"),
                    rss_mb=int(last.get("rss_total", 0) / MB),
                )
                bar.update(1)

    return wait


def wait_sealed(peer: PymilvusPeer, monitor: Monitor, timeout: float, settle: float) -> dict[str, Any]:
    """Flush, wait for 0 growing rows and a finished index, settle, then sample RSS three times."""
    t0 = time.monotonic()
    out: dict[str, Any] = {}
    try:
        peer.client.flush(COLLECTION)
        while (growing := monitor.growing()) != 0 and time.monotonic() - t0 < timeout:
            time.sleep(1.0)
        out["growing_rows"] = growing
        peer._wait_index(timeout=max(10.0, timeout - (time.monotonic() - t0)))
    except Exception as exc:
        out["error"] = repr(exc)
    out["wait_s"] = time.monotonic() - t0
    time.sleep(settle)
    samples = []
    for _ in range(3):
        samples.append(monitor.sample())
        time.sleep(1.0)
    best = sorted(samples, key=lambda s: s["rss_total"])[1]  # the median
    out["rss_mb"] = best["rss_total"] / MB
    out["rss_by_process_mb"] = {k: v / MB for k, v in best["rss"].items()}
    return out


def run_target(name: str, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name, "load_avg_before": os.getloadavg(), "phases": [], "windows": []}
    console.rule(f"[bold]{name}")
    queries = ds.queries.tolist()
    peer: PymilvusPeer | None = None
    helpers: list[PymilvusPeer] = []
    log = AckLog()
    runs: list[tuple[dict[str, Any], ClientRun]] = []
    monitor = producer = probe = None
    try:
        t0 = time.perf_counter()
        peer = make_peer(name, args)
        out["start_s"] = time.perf_counter() - t0
        console.print(f"{name}: started in {out['start_s']:.1f} s; building (insert, flush, index, load) ...")
        out["ready_s"] = peer.setup(ds.base)
        out["index_used"] = peer.index_used
        console.print(f"{name}: ready in {out['ready_s']:.1f} s, index {peer.index_used}")
        walvus = isinstance(peer, WalvusPeer)
        helpers = [peer.clone() for _ in range(3)]
        monitor = Monitor(
            lambda: growing_rows(helpers[0], walvus, lambda: len(ds.base) + log.count), exclude=set()
        )
        out["loaded"] = {"rss_mb": monitor.sample()["rss_total"] / MB, "rss_by_process_mb": None}
        out["loaded"]["rss_by_process_mb"] = {k: v / MB for k, v in monitor.samples[-1]["rss"].items()}
        monitor.start()
        first_id = len(ds.base)
        producer = StreamProducer(helpers[1], first_id, fresh_vectors(ds.dim, stream=4), log)
        probe = FreshnessProbe(helpers[2], fresh_vectors(ds.dim, stream=5), log, cap=args.fresh_cap)
        x = 0.0
        for kind, rate, clients, seconds in plan(args):
            if kind == "stream" and out.get("stream_start") is None:
                out["stream_start"] = time.monotonic()
                producer.start()
                probe.start()
            producer.rate = float(rate)
            levels = [(0.0, "Strong")] if walvus else [(0.0, "Strong"), (seconds / 2, "Bounded")]
            label = f"{name} {kind} {rate} rows/s {clients} client(s)"
            run = run_clients(
                peer.remote_uri,
                queries,
                clients,
                levels,
                seconds,
                on_start=monitor.exclude.update,
                wait=_progress(label, monitor, producer, first_id),
            )
            phase = {
                "kind": kind,
                "rate": rate,
                "clients": clients,
                "seconds": seconds,
                "x0": x,
                "levels": levels,
            }
            phase.update(start=run.start, errors=run.errors, first_error=run.first_error)
            phase["load_avg"] = os.getloadavg()[0]
            out["phases"].append(phase)
            runs.append((phase, run))
            if run.errors:
                console.print(f"[red]{label}: {run.errors} errors, first: {run.first_error}")
            x += seconds
        out["stream_end"] = time.monotonic()
        producer.rate = 0.0
        producer.stop()
        probe.stop()
        with console.status(f"{name}: flush, wait for the growing rows to seal and the index to finish ..."):
            out["sealed"] = wait_sealed(peer, monitor, args.seal_timeout, args.settle)
        console.print(
            f"{name}: sealed after {out['sealed']['wait_s']:.1f} s, RSS {out['sealed']['rss_mb']:.0f} MB"
            + (f" [red]{out['sealed']['error']}" if "error" in out["sealed"] else "")
        )
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
        console.print(f"[red]{name} failed: {out['error']}")
        console.print(out["traceback"])
    finally:
        for part in (producer, probe, monitor):
            if part is not None and part.is_alive():
                part.stop()
        for h in helpers:
            h.close()
        if peer is not None:
            close_peer(peer, out)
    if producer is not None:
        out["producer"] = {
            "rows_acked": producer.next_id - len(ds.base),
            "skipped_rows": producer.skipped_rows,
            "errors": len(producer.errors),
            "first_error": producer.errors[0] if producer.errors else None,
        }
    if probe is not None:
        out["probe_errors"] = {"count": len(probe.errors), "first": probe.errors[:3]}
    if monitor is not None:
        out["monitor_errors"] = {"count": len(monitor.errors), "first": monitor.errors[:3]}
    if runs:
        with console.status(f"{name}: exact ground truth for the sampled searches ..."):
            samples = []
            for phase, run in runs:
                ws, ss = windows(phase, run, producer, probe, monitor, out, args, len(out["windows"]))
                out["windows"] += ws
                samples += ss
            attach_recall(ds, log, samples, out["windows"])
    return out


# main -------------------------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--rates", type=_ints, default=[500, 1000], help="rows/s of the streaming phases")
    ap.add_argument("--clients", type=_ints, default=[1, 4], help="search client processes per phase")
    ap.add_argument("--phase-seconds", type=float, default=150.0)
    ap.add_argument("--static-seconds", type=float, default=None, help="default: min(30, --phase-seconds)")
    ap.add_argument("--window", type=float, default=15.0, help="seconds per reported window")
    ap.add_argument("--recall-samples", type=int, default=50, help="searches per window checked for recall")
    ap.add_argument("--fresh-cap", type=float, default=5.0, help="seconds before a freshness trial times out")
    ap.add_argument("--seal-timeout", type=float, default=600.0, help="seconds to wait for 0 growing rows")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after sealing before measuring RSS")
    ap.add_argument("--gateway-processes", type=int, default=2, help="walvus gateway processes on the port")
    ap.add_argument("--keep", action="store_true", help="keep walvus and Milvus data and logs")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="report these targets beside the other targets of the last bench/results/streaming.json",
    )
    args = ap.parse_args()
    if args.static_seconds is None:
        args.static_seconds = min(30.0, args.phase_seconds)
    wanted = wanted_targets(args.targets, TARGETS)
    began = time.perf_counter()
    ds = clustered_dataset(args.rows, args.dim)
    results = [run_target(name, ds, args) for name in wanted]
    if args.merge:  # earlier targets of bench/results/streaming.json stay beside the new ones
        earlier = json.loads((RESULTS / "streaming.json").read_text())["data"]["targets"]
        results = [r for r in earlier if r.get("target") not in wanted] + results
    total = time.perf_counter() - began
    verdicts = report(results, ds, args)
    png = plot(results, args, RESULTS / "streaming_qps.png")
    path = save(
        "streaming",
        {
            "dataset": ds.summary(),
            "params": run_params(nq=1, insert_batch=100, **vars(args)),
            "cpus": os.cpu_count(),
            "total_s": total,
            "verdicts": verdicts,
            "targets": results,
        },
    )
    console.print(f"saved {path}" + (f" and {png}" if png else "") + f"; whole run {total / 60:.1f} min")


if __name__ == "__main__":
    main()
