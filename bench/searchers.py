"""Memory of walvus searcher processes: one holding a 2-shard collection, or two holding half each.

    python -m bench.searchers [--rows 400000] [--dim 128]

One deployment (broker, streams, indexer, a gateway with ``WALVUS_SEARCHERS=remote``) and a
2-shard collection (IVF_FLAT, L2) of ``--rows`` random vectors, flushed and indexed. Then:

1. one fresh ``walvus searcher`` loads it (both shards): its resident memory (VmRSS);
2. the collection is released, that searcher stops, two fresh searchers join their group, and the
   collection is loaded again: Kafka's group gives each one shard; their RSS summed.

Also the RSS of an idle searcher (no collection): the fixed cost of a process, which the two
searchers pay twice. Beside RSS, PSS (``/proc/<pid>/smaps_rollup``): RSS counts the shared
libraries every walvus process maps (pyarrow, FAISS, librdkafka) once per process, PSS splits them. Results: ``bench/results/searchers.json`` and a table on the terminal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from bench.harness import console, local_deployment, print_table, save
from bench.peers import _connect_retry
from walvus.processes import stop_processes

NAME = "rss"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with other processes (the libraries every walvus
    process maps) counted as a share each, so the sum over processes is what they take together."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_searcher(root: Path, key: str) -> subprocess.Popen:
    log = open(root / f"{key}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "walvus", "searcher"], env={**os.environ}, stdout=log, stderr=log
    )


def wait_loaded(client: MilvusClient, expect_rows: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = client.query(
                NAME, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=60
            )
            if got[0]["count(*)"] == expect_rows:
                return
        except Exception:  # noqa: BLE001 - shards move while searchers start: ask again
            pass
        time.sleep(1)
    raise TimeoutError("the searchers did not load the collection")


def settle(pids: list[int], seconds: float = 10.0) -> list[float]:
    """RSS once it stops growing (background index loads and interim indexes finish)."""
    last = [rss_mb(p) for p in pids]
    for _ in range(int(seconds)):
        time.sleep(1)
        now = [rss_mb(p) for p in pids]
        if all(abs(a - b) < 1 for a, b in zip(now, last, strict=True)):
            return now
        last = now
    return last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    env = {"WALVUS_SEARCHERS": "remote", "WALVUS_SEARCHER_SESSION_TIMEOUT_MS": "6000"}
    with local_deployment(("streams", "indexer", "gateway"), **env) as settings:
        root = Path(settings["WALVUS_DATA_DIR"]).parent
        idle = start_searcher(root, "searcher-idle")
        client = _connect_retry(f"http://127.0.0.1:{settings['WALVUS_PORT']}", 120)
        time.sleep(10)  # imported and in its groups
        idle_rss = settle([idle.pid])[0]
        idle_pss = pss_mb(idle.pid)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=args.dim)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 1024})
        client.create_collection(NAME, schema=schema, index_params=idx, num_shards=2)
        rng = np.random.default_rng(0)
        with console.status(f"inserting {args.rows} rows, flushing, indexing ..."):
            for lo in range(0, args.rows, 20_000):
                n = min(20_000, args.rows - lo)
                vecs = rng.random((n, args.dim), dtype=np.float32)
                client.insert(NAME, [{"id": lo + i, "vec": v} for i, v in enumerate(vecs)])
            client.flush(NAME)
            wait_loaded(client, args.rows)
            _wait_indexed(client)
        client.release_collection(NAME)
        stop_processes([idle])  # it served the load; the measurements use fresh processes

        one = start_searcher(root, "searcher-one")
        time.sleep(8)  # in its group before the load
        client.load_collection(NAME)
        wait_loaded(client, args.rows)
        one_rss = settle([one.pid], 20)[0]
        one_pss = pss_mb(one.pid)
        client.release_collection(NAME)
        stop_processes([one])

        two = [start_searcher(root, f"searcher-{k}") for k in ("a", "b")]
        time.sleep(8)  # both in the group before the load: each is assigned one shard from the start
        client.load_collection(NAME)
        wait_loaded(client, args.rows)
        two_rss = settle([p.pid for p in two], 20)
        two_pss = [pss_mb(p.pid) for p in two]
        stop_processes(two)
        client.close()
    total, total_pss = sum(two_rss), sum(two_pss)
    data_mb = args.rows * args.dim * 4 / 2**20
    rows = [
        ["idle searcher (no collection)", f"{idle_rss:.0f}", f"{idle_pss:.0f}"],
        ["1 searcher, both shards", f"{one_rss:.0f}", f"{one_pss:.0f}"],
        [
            "2 searchers, one shard each",
            " + ".join(f"{r:.0f}" for r in two_rss) + f" = {total:.0f}",
            " + ".join(f"{r:.0f}" for r in two_pss) + f" = {total_pss:.0f}",
        ],
        ["sum / one", f"{total / one_rss:.2f}", f"{total_pss / one_pss:.2f}"],
        [
            "(sum - 2 idle) / (one - idle)",
            f"{(total - 2 * idle_rss) / max(1.0, one_rss - idle_rss):.2f}",
            f"{(total_pss - 2 * idle_pss) / max(1.0, one_pss - idle_pss):.2f}",
        ],
    ]
    print_table(
        f"searcher memory (MB), {args.rows} x {args.dim} float vectors ({data_mb:.0f} MB), IVF_FLAT",
        ["", "RSS", "PSS"],
        rows,
    )
    path = save(
        "searchers",
        {
            "rows": args.rows,
            "dim": args.dim,
            "vector_mb": data_mb,
            "idle_rss_mb": idle_rss,
            "one_searcher_rss_mb": one_rss,
            "two_searchers_rss_mb": two_rss,
            "sum_over_one": total / one_rss,
            "idle_pss_mb": idle_pss,
            "one_searcher_pss_mb": one_pss,
            "two_searchers_pss_mb": two_pss,
            "pss_sum_over_one": total_pss / one_pss,
            "data_part_ratio": (total - 2 * idle_rss) / max(1.0, one_rss - idle_rss),
        },
    )
    console.print(f"saved {path}")


def _wait_indexed(client: MilvusClient, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.describe_index(NAME, "vec")
        if int(info.get("pending_index_rows", 1)) == 0 and int(info.get("indexed_rows", 0)) > 0:
            return
        time.sleep(1)
    raise TimeoutError("index not built")


if __name__ == "__main__":
    main()
