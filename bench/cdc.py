"""CDC: replication lag at a steady write rate, and the most rows/s one task replicates.

    python -m bench.cdc [--rate 5000] [--seconds 30] [--dim 128] [--max-rows 500000]

Two local brokers (site A, site B) and ``walvus cdc serve`` as its own process, as deployed.

- Steady: a writer inserts ``--rate`` rows/s into A (batches of ``--steady-batch`` rows, two
  shards) while a task replicates to B. The lag of one write is the time from A's acknowledgement
  to the moment a ``read_committed`` consumer on B sees it (the target transaction committed).
- Maximum: ``--max-rows`` rows are written to A first (batches of ``--max-batch``); then a task
  starting at ``earliest`` copies them. Throughput = rows / (time from the task's session running
  to the last row visible on B).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.harness import print_table, save
from cdc.client import CdcClient
from cdc.clusters import reader
from cdc.routing import peek_header
from cdc.spec import Endpoint
from schemas.collection import CollectionSchema, FieldSchema
from schemas.topics import wal_topic
from schemas.types import DataType
from walvus.api import Walvus
from walvus.catalog import Catalog
from walvus.kafka import LocalKafka, free_port
from walvus.log import KafkaLog
from walvus.storage import SegmentStore


def _schema(dim: int) -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
            FieldSchema("tag", DataType.INT32),
        )
    )


def _api(bootstrap: str, ns: str) -> Walvus:
    kafka = KafkaLog({"bootstrap.servers": bootstrap})
    return Walvus(kafka, Catalog(kafka, ns).start(), SegmentStore("/nonexistent"), namespace=ns, site=ns)


def _batch(rng: np.random.Generator, start: int, n: int, dim: int) -> dict:
    return {
        "id": np.arange(start, start + n, dtype=np.int64),
        "vec": rng.random((n, dim), dtype=np.float32),
        "tag": rng.integers(0, 100, n, dtype=np.int32),
    }


class Arrivals:
    """Tails B's WAL topic (read_committed) and notes when each write (header ts) arrives."""

    def __init__(self, bootstrap: str, ns: str, collection_id: int, shards: int) -> None:
        self.seen: dict[int, float] = {}  # write ts -> arrival of its last shard record
        self.rows = 0
        self.messages = 0
        self._stop = threading.Event()
        self._tail = reader(Endpoint(bootstrap, ns), fetch_wait_max_ms=5)
        topic = wal_topic(ns, collection_id)
        self._tail.assign({(topic, p): 0 for p in range(shards)})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._tail.poll(1000, 0.05):
                if m.error() is None:
                    now = time.monotonic()
                    h = peek_header(m.value())
                    if h is not None:
                        self.seen[h.ts] = now
                        self.rows += _rows_in(m.value())
                        self.messages += 1
        self._tail.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _rows_in(raw: bytes) -> int:
    import pyarrow as pa

    return sum(b.num_rows for b in pa.ipc.open_stream(pa.py_buffer(raw)))


def _task(client: CdcClient, name: str, ns_a: str, ns_b: str, a: str, b: str) -> None:
    client.create(
        {
            "name": name,
            "source": {"bootstrap": a, "namespace": ns_a},
            "target": {"bootstrap": b, "namespace": ns_b},
            "collections": [name],
        }
    )


def steady(client: CdcClient, a: str, b: str, rate: int, seconds: float, dim: int, batch: int) -> dict:
    ns = f"s{uuid.uuid4().hex[:6]}"
    api = _api(a, ns + "a")
    name = "steady"
    info = api.create_collection(name, _schema(dim), shards_num=2)
    _task(client, name, ns + "a", ns + "b", a, b)
    arrivals = Arrivals(b, ns + "b", info.collection_id, 2)
    rng = np.random.default_rng(1)
    warm = api.insert(name, _batch(rng, -batch, batch, dim))  # wait until the task runs and copies
    while warm.ts not in arrivals.seen:
        time.sleep(0.01)
    batches = [_batch(rng, i * batch, batch, dim) for i in range(int(rate * seconds / batch))]
    acked: dict[int, float] = {}
    interval = batch / rate
    t0 = time.monotonic()
    for i, rows in enumerate(tqdm(batches, desc=f"steady {rate} rows/s", unit="batch", leave=False)):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        res = api.insert(name, rows)
        acked[res.ts] = time.monotonic()
    wrote = time.monotonic() - t0
    deadline = time.monotonic() + 120
    while len(arrivals.seen) < len(acked) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    arrivals.stop()
    lags = np.array([arrivals.seen[ts] - t for ts, t in acked.items() if ts in arrivals.seen]) * 1000
    api.close()
    return {
        "rate": rate,
        "achieved_rows_per_s": len(batches) * batch / wrote,
        "writes": len(acked),
        "replicated_writes": len(lags),
        "lag_p50_ms": float(np.percentile(lags, 50)),
        "lag_p99_ms": float(np.percentile(lags, 99)),
        "lag_max_ms": float(lags.max()),
    }


def maximum(client: CdcClient, a: str, b: str, rows: int, dim: int, batch: int) -> dict:
    ns = f"m{uuid.uuid4().hex[:6]}"
    api = _api(a, ns + "a")
    name = "bulk"
    info = api.create_collection(name, _schema(dim), shards_num=2)
    rng = np.random.default_rng(2)
    for start in tqdm(range(0, rows, batch), desc="preload A", unit="batch", leave=False):
        api.insert(name, _batch(rng, start, min(batch, rows - start), dim))
    arrivals = Arrivals(b, ns + "b", info.collection_id, 2)
    _task(client, name, ns + "a", ns + "b", a, b)
    while client.get(name)["status"]["state"] != "running":
        time.sleep(0.01)
    t_running = time.monotonic()
    records = sum(api.kafka.end_offsets(wal_topic(ns + "a", info.collection_id), 2)) + 1  # + catalog
    deadline = time.monotonic() + 600
    with tqdm(total=records, desc="replicate", unit="record", leave=False) as bar:
        while (done := client.get(name)["status"]["replicated_records"]) < records:
            assert time.monotonic() < deadline, "the task did not finish in 10 minutes"
            bar.update(done - bar.n)
            time.sleep(0.02)
    took = time.monotonic() - t_running  # committed on B, as the task counts it
    while arrivals.rows < rows and time.monotonic() < deadline:  # and B's readers see every row
        time.sleep(0.05)
    arrivals.stop()
    first = min(arrivals.seen.values())
    mb = rows * (dim * 4 + 12) / 2**20
    api.close()
    return {
        "rows": rows,
        "records": arrivals.messages,
        "seconds": took,
        "rows_per_s": rows / took,
        "mb_per_s": mb / took,
        "first_rows_on_b_s": first - t_running,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--steady-batch", type=int, default=100)
    p.add_argument("--max-rows", type=int, default=500_000)
    p.add_argument("--max-batch", type=int, default=1000)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="walvus-bench-cdc-"))
    brokers = [
        LocalKafka(root / site, port=free_port(), controller_port=free_port(), heap="1g")
        for site in ("a", "b")
    ]
    a, b = (k.start(timeout=120) for k in brokers)
    port = free_port()
    env = {**os.environ, "WALVUS_CDC_PORT": str(port), "WALVUS_CDC_TASK_FILE": str(root / "tasks.json")}
    log = open(root / "cdc.log", "ab")  # noqa: SIM115
    cdc = subprocess.Popen([sys.executable, "-m", "walvus", "cdc", "serve"], env=env, stdout=log, stderr=log)
    client = CdcClient(f"http://127.0.0.1:{port}")
    try:
        for _ in range(300):
            try:
                client.health()
                break
            except Exception:
                time.sleep(0.1)
        s = steady(client, a, b, args.rate, args.seconds, args.dim, args.steady_batch)
        m = maximum(client, a, b, args.max_rows, args.dim, args.max_batch)
    finally:
        cdc.terminate()
        cdc.wait(30)
        for k in brokers:
            k.stop()
        shutil.rmtree(root, ignore_errors=True)
    print_table(
        f"CDC replication lag, steady {s['rate']:,} rows/s, {args.dim}-d, {args.steady_batch}-row writes",
        ["writes", "achieved rows/s", "lag p50 ms", "lag p99 ms", "lag max ms"],
        [[s["writes"], s["achieved_rows_per_s"], s["lag_p50_ms"], s["lag_p99_ms"], s["lag_max_ms"]]],
    )
    print_table(
        f"CDC maximum throughput, one task, {args.dim}-d, {args.max_batch}-row records, 2 shards",
        ["rows", "records", "seconds", "rows/s", "MB/s", "first rows on B (s)"],
        [
            [
                m["rows"],
                m["records"],
                m["seconds"],
                m["rows_per_s"],
                m["mb_per_s"],
                m["first_rows_on_b_s"],
            ]
        ],
    )
    print(f"saved {save('cdc', {'args': vars(args), 'steady': s, 'maximum': m})}")


if __name__ == "__main__":
    main()
