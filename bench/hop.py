"""The gateway -> searcher hop, measured in rounds: nq=1 Strong QPS with the searcher inside the
gateway beside one ``walvus searcher`` process behind it, both deployments up at once.

    python -m bench.hop [--rows 20000] [--rounds 8] [--seconds 3] [--clients 1] [--gateway-processes 2]

``bench.search`` measures each target once, one after the other; on a 2-core machine shared by
the broker, the workers and the clients, one 5-second window can land on a busy or a quiet
moment, and a ratio of two such windows moved between 0.6 and 0.8 from run to run. Here both
deployments run side by side (the same dataset, index and parameters as ``bench.search``: HNSW
M=16, efConstruction=200, ef=64, COSINE, top-10), and the windows alternate: round ``i``
measures one, then the other, in an order that flips every round, so both see the same
background. Reported: each target's QPS per round, their medians, and the median of the per-round
ratios (hop / in the gateway). Results: ``bench/results/hop.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from bench.harness import clustered_dataset, console, print_table, save
from bench.peers import WalvusPeer, close_peer, run_params
from bench.search import measure

TARGETS = {"walvus": 0, "walvus-1s": 1}  # name -> searcher processes (0: inside the gateway)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0, help="per window")
    ap.add_argument("--clients", type=int, default=1, help="concurrent clients (processes when > 1)")
    ap.add_argument("--gateway-processes", type=int, default=2, help="walvus gateway processes on the port")
    args = ap.parse_args()
    ds = clustered_dataset(args.rows, args.dim)
    queries = ds.queries.tolist()
    peers: dict[str, WalvusPeer] = {}
    out: dict[str, Any] = {"targets": {}}
    try:
        for name, searchers in TARGETS.items():
            peer = WalvusPeer()
            peers[name] = peer
            peer.start(gateway_processes=args.gateway_processes, searchers=searchers)
            ready = peer.setup(ds.base)
            console.print(f"{name}: ready in {ready:.1f} s, index {peer.index_used}")
            measure(peer, queries, 1, args.clients, "Strong", 1.0)  # warm-up, not kept
        rounds: list[dict[str, Any]] = []
        names = list(TARGETS)
        for i in range(args.rounds):
            row: dict[str, Any] = {"round": i, "load_avg_1m": os.getloadavg()[0]}
            for name in names if i % 2 == 0 else names[::-1]:
                r = measure(peers[name], queries, 1, args.clients, "Strong", args.seconds)
                row[name] = {k: r[k] for k in ("qps", "p50_ms", "p99_ms", "server_mean_ms", "errors")}
            row["ratio"] = row["walvus-1s"]["qps"] / row["walvus"]["qps"]
            rounds.append(row)
            console.print(
                f"round {i}: in the gateway {row['walvus']['qps']:.0f} QPS, over the hop "
                f"{row['walvus-1s']['qps']:.0f} QPS, ratio {row['ratio']:.2f} (load {row['load_avg_1m']:.1f})"
            )
    finally:
        for name, peer in peers.items():
            out["targets"][name] = {}
            close_peer(peer, out["targets"][name])
    medians = {n: statistics.median(r[n]["qps"] for r in rounds) for n in TARGETS}
    ratios = [r["ratio"] for r in rounds]
    print_table(
        f"nq=1 Strong, {args.clients} client(s), {args.rounds} alternating rounds of {args.seconds:g} s",
        ["", "in the gateway QPS", "one searcher QPS", "ratio"],
        [
            *[
                [
                    str(r["round"]),
                    f"{r['walvus']['qps']:.0f}",
                    f"{r['walvus-1s']['qps']:.0f}",
                    f"{r['ratio']:.2f}",
                ]
                for r in rounds
            ],
            [
                "median",
                f"{medians['walvus']:.0f}",
                f"{medians['walvus-1s']:.0f}",
                f"{statistics.median(ratios):.2f}",
            ],
        ],
    )
    path = save(
        "hop",
        {
            "dataset": ds.summary(),
            "params": run_params(
                seconds=args.seconds, clients=args.clients, gateway_processes=args.gateway_processes
            ),
            "cpus": os.cpu_count(),
            "rounds": rounds,
            "median_qps": medians,
            "median_ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "when": time.strftime("%Y-%m-%d %H:%M"),
        },
    )
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
