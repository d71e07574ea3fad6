"""Soak: disk bytes and search QPS over a long run of upserts and deletes over a fixed key set.

    python -m bench.soak [--minutes 30] [--keys 20000] [--dim 64] [--rate 100] [--sample 15]
                         [--deleted 0.02] [--env KEY=VALUE ...] [--wal-segment-ms N] [--out soak]

One local deployment (its own Kafka broker, streams worker, indexer with compaction and GC,
one gateway), one collection ``soak`` (``id`` INT64 primary key, ``vector`` FLOAT_VECTOR,
``tag`` INT64; HNSW M=16 efConstruction=100, COSINE):

1. Insert every key ``0..keys-1`` (random unit vectors), flush, build the index, load.
2. For ``--minutes``: a writer thread, every 0.5 s, upserts ``rate/2`` random live keys with new
   vectors, deletes a few live keys and re-inserts as many keys deleted earlier (oldest first), so
   about ``--deleted`` of the keys are deleted at any time and the live count stays constant. A
   late tick does not make later ones burst. A search process runs nq=1 top-10 (ef=64) searches
   of random vectors at **Bounded** consistency in a closed loop (one client).
3. Every ``--sample`` seconds: bytes on disk (allocated blocks, as ``du``) of the Delta tables
   (``rows`` + ``deletes``), of the index files, and of the Kafka log dir (all topics, the
   broker's metadata log included); the rows table's stored rows and active Parquet bytes (from
   the Delta log); tombstones in the deletes table; live rows; searches done in the window.

Live data is ``live rows x bytes per stored row``, where bytes per stored row is the active rows
table's Parquet bytes / its rows (vectors, scalars and walvus's ``_shard/_offset/_seq/_ts``
columns, as Parquet stores them): the size of one compacted copy of the live rows.

Settings (each can be overridden with ``--env``): ``WALVUS_COMPACTION_CHECK_SECONDS=20`` (the
policy is checked often enough to act several times a minute), ``WALVUS_VACUUM_RETENTION_SECONDS=0``
(files a compaction removed leave the disk at once instead of after 7 days of time travel),
``WALVUS_GC_INTERVAL_SECONDS=30`` and ``WALVUS_GC_WAL_RETENTION_SECONDS=120`` (WAL records
older than 2 minutes that Delta holds are deleted every 30 s, instead of keeping 7 days) and
``WALVUS_SEAL_MAX_AGE_SECONDS=120`` (a growing segment seals 2 minutes after its first row instead
of 5: the WAL must keep every record since the last seal, so the seal age is the WAL's floor),
``WALVUS_GC_INDEX_GRACE_SECONDS=60`` (a compacted-away segment's index file stays 1 minute, not 5,
for a searcher that listed the segment just before the compaction).

``--wal-segment-ms N`` sets ``segment.ms`` on the WAL topic: Kafka frees disk only by deleting whole
closed segments, and the local broker closes a segment at 64 MB or after 7 days.

Results: a table on the terminal, ``bench/results/<out>.json`` and ``bench/results/<out>.png``
(drawn by ``bench/soak_report.py``).
Not a timed test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import RESULTS, console, local_deployment, save
from bench.soak_report import plot, report, verdict
from walvus.storage import DELETES, ROWS, SegmentStore

COLLECTION = "soak"
MB = 1024 * 1024
SETTINGS = {
    "WALVUS_COMPACTION_CHECK_SECONDS": "20",
    "WALVUS_VACUUM_RETENTION_SECONDS": "0",
    "WALVUS_GC_INTERVAL_SECONDS": "30",
    "WALVUS_GC_WAL_RETENTION_SECONDS": "120",
    "WALVUS_SEAL_MAX_AGE_SECONDS": "120",
    "WALVUS_GC_INDEX_GRACE_SECONDS": "60",
}
TICK = 0.5


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(ids: list[int], vectors: np.ndarray) -> list[dict[str, Any]]:
    return [{"id": i, "vector": v.tolist(), "tag": i % 100} for i, v in zip(ids, vectors, strict=True)]


def _connect(uri: str, timeout: float = 120) -> Any:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            return MilvusClient(uri, timeout=30, dedicated=True)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _search_loop(uri: str, dim: int, done: Any, errors: Any, stop: Any) -> None:
    """Closed-loop nq=1 top-10 Bounded searches until ``stop`` is set (a process of its own)."""
    client = _connect(uri)
    rng = np.random.default_rng(7)
    queries = _unit(rng, 1000, dim).tolist()
    i = 0
    while not stop.is_set():
        try:
            client.search(
                COLLECTION,
                data=[queries[i % len(queries)]],
                anns_field="vector",
                limit=10,
                search_params={"metric_type": "COSINE", "params": {"ef": 64}},
                consistency_level="Bounded",
            )
            with done.get_lock():
                done.value += 1
        except Exception:
            with errors.get_lock():
                errors.value += 1
            time.sleep(0.1)
        i += 1
    client.close()


class Writer(threading.Thread):
    """Upserts, deletes and re-inserts on a fixed schedule, keeping the live key count constant."""

    def __init__(self, client: Any, keys: int, dim: int, rate: float, deleted_fraction: float) -> None:
        super().__init__(daemon=True)
        self.client, self.keys, self.dim, self.rate = client, keys, dim, rate
        self.rng = np.random.default_rng(11)
        self.live = list(range(keys))
        self.pos = {k: k for k in self.live}
        self.deleted: deque[int] = deque()
        self.target_deleted = int(keys * deleted_fraction)
        self.upserted = self.removed = self.reinserted = self.skipped_ticks = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def _take_live(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            j = int(self.rng.integers(len(self.live)))
            k = self.live[j]
            last = self.live.pop()
            if j < len(self.live):
                self.live[j] = last
                self.pos[last] = j
            del self.pos[k]
            out.append(k)
        return out

    def _tick(self) -> None:
        n = max(1, round(self.rate * TICK))
        churn = max(1, n // 10)  # a tenth of the tick's rows are deletes + re-inserts
        gone = self._take_live(churn)
        self.client.delete(COLLECTION, ids=gone)
        self.removed += len(gone)
        self.deleted.extend(gone)
        back = [self.deleted.popleft() for _ in range(min(churn, len(self.deleted) - self.target_deleted))]
        for k in back:
            self.pos[k] = len(self.live)
            self.live.append(k)
        if back:
            self.client.insert(COLLECTION, _rows(back, _unit(self.rng, len(back), self.dim)))
            self.reinserted += len(back)
        idx = self.rng.choice(len(self.live), size=min(n - len(back), len(self.live)), replace=False)
        ups = [self.live[int(j)] for j in idx]
        self.client.upsert(COLLECTION, _rows(ups, _unit(self.rng, len(ups), self.dim)))
        self.upserted += len(ups)

    def run(self) -> None:
        start = time.monotonic()
        i = 0
        while not self._halt.is_set():
            try:
                self._tick()
            except Exception as exc:
                self.errors.append(repr(exc))
            i += 1
            due = start + i * TICK
            now = time.monotonic()
            if now > due + TICK:  # late: give up the missed ticks instead of bursting
                missed = int((now - due) / TICK)
                self.skipped_ticks += missed
                i += missed
                due = start + i * TICK
            self._halt.wait(max(0.0, due - now))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def _du(path: Path, skip: str | None = None) -> int:
    total = 0
    for dirpath, dirnames, files in os.walk(path):
        if skip is not None and skip in dirnames:
            dirnames.remove(skip)
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass  # removed while we walked (vacuum, Kafka segment deletion)
    return total


def _delta_stats(store: SegmentStore, collection_id: int, kind: str) -> tuple[int, int, int]:
    """(active files, their rows, their Parquet bytes) of a Delta table, from its log."""
    try:
        snap = store.open(collection_id, kind)
        acts = snap.files() if snap is not None else None
    except Exception:
        return 0, 0, 0
    if acts is None:
        return 0, 0, 0
    rows = acts.column("num_records").to_pylist()
    size = acts.column("size_bytes").to_pylist()
    return len(rows), int(sum(r or 0 for r in rows)), int(sum(size))


def sample(tables: Path, kafka_logs: Path, wal_prefix: str, writer: Writer, dim: int) -> dict[str, Any]:
    cdirs = [d for d in tables.iterdir() if d.is_dir()] if tables.exists() else []
    delta = sum(_du(d, skip="indexes") for d in cdirs)
    indexes = sum(_du(d / "indexes") for d in cdirs if (d / "indexes").exists())
    files = stored = parquet = tombstones = 0
    store = SegmentStore(str(tables))
    for d in cdirs:
        if not d.name.isdigit():
            continue
        f, r, b = _delta_stats(store, int(d.name), ROWS)
        files, stored, parquet = files + f, stored + r, parquet + b
        tombstones += _delta_stats(store, int(d.name), DELETES)[1]
    live = len(writer.live)
    per_row = parquet / stored if stored else 0.0
    return {
        "delta_bytes": delta,
        "index_bytes": indexes,
        "kafka_bytes": _du(kafka_logs),
        "kafka_wal_bytes": sum(_du(d) for d in kafka_logs.glob(f"{wal_prefix}*")),
        "stored_rows": stored,
        "rows_files": files,
        "tombstones": tombstones,
        "live_rows": live,
        "bytes_per_stored_row": per_row,
        "live_bytes": live * per_row,
        "live_raw_bytes": live * (dim * 4 + 16),
        "load_avg": os.getloadavg()[0],
    }


def _roll_wal(bootstrap: str, prefix: str, segment_ms: int) -> list[str]:
    """Set ``segment.ms`` on the WAL topics, so Kafka rolls segments that DeleteRecords can free."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    entry = ConfigEntry("segment.ms", str(segment_ms), incremental_operation=AlterConfigOpType.SET)
    res = [ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[entry]) for t in topics]
    for f in admin.incremental_alter_configs(res).values():
        f.result(timeout=30)
    return topics


def soak(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from pymilvus import DataType

    out: dict[str, Any] = {"args": vars(args), "settings": env, "samples": []}
    with local_deployment(("streams", "indexer", "gateway"), **env) as settings:
        root = Path(settings["WALVUS_DATA_DIR"]).parent
        tables, kafka_logs = Path(settings["WALVUS_DATA_DIR"]) / "tables", root / "kafka" / "logs"
        uri = f"http://127.0.0.1:{settings['WALVUS_PORT']}"
        wal = f"{settings['WALVUS_NAMESPACE']}.wal."
        client = _connect(uri)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=args.dim)
        schema.add_field("tag", DataType.INT64)
        client.create_collection(COLLECTION, schema=schema)
        if args.wal_segment_ms:
            topics = _roll_wal(settings["KAFKA_BOOTSTRAP_SERVERS"], wal, args.wal_segment_ms)
            console.print(f"segment.ms={args.wal_segment_ms} on {', '.join(topics)}")
        t0 = time.perf_counter()
        rng = np.random.default_rng(3)
        with console.status(f"inserting {args.keys:,} keys, flush, HNSW index, load ..."):
            for s in range(0, args.keys, 2000):
                ids = list(range(s, min(args.keys, s + 2000)))
                client.insert(COLLECTION, _rows(ids, _unit(rng, len(ids), args.dim)))
            client.flush(COLLECTION)
            ip = client.prepare_index_params()
            ip.add_index(
                "vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 100}
            )
            client.create_index(COLLECTION, ip)
            while True:
                desc = client.describe_index(COLLECTION, "vector") or {}
                if desc.get("pending_index_rows", 1) == 0 and "Finished" in str(desc.get("state")):
                    break
                time.sleep(0.5)
            client.load_collection(COLLECTION)
        out["ready_s"] = time.perf_counter() - t0
        console.print(f"ready in {out['ready_s']:.1f} s")
        writer = Writer(client, args.keys, args.dim, args.rate, args.deleted)
        out["baseline"] = sample(tables, kafka_logs, wal, writer, args.dim)
        ctx = mp.get_context("spawn")
        done, errors, stop = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
        searcher = ctx.Process(target=_search_loop, args=(uri, args.dim, done, errors, stop), daemon=True)
        searcher.start()
        while done.value == 0 and searcher.is_alive():
            time.sleep(0.2)
        writer.start()
        start = last_t = time.monotonic()
        last_done = done.value
        end = start + args.minutes * 60
        try:
            while (now := time.monotonic()) < end:
                time.sleep(max(0.0, min(end, last_t + args.sample) - now))
                t, n = time.monotonic(), done.value
                s = sample(tables, kafka_logs, wal, writer, args.dim)
                s.update(
                    t_min=(t - start) / 60,
                    qps=(n - last_done) / (t - last_t),
                    search_errors=errors.value,
                    upserted=writer.upserted,
                    deleted=writer.removed,
                    reinserted=writer.reinserted,
                    write_errors=len(writer.errors),
                )
                out["samples"].append(s)
                last_t, last_done = t, n
                console.print(
                    f"{s['t_min']:5.1f} min  delta {s['delta_bytes'] / MB:6.1f} MB  index "
                    f"{s['index_bytes'] / MB:6.1f} MB  kafka {s['kafka_bytes'] / MB:6.1f} MB (WAL "
                    f"{s['kafka_wal_bytes'] / MB:5.1f})  live "
                    f"{s['live_bytes'] / MB:5.1f} MB  stored/live {s['stored_rows']:,}/{s['live_rows']:,}  "
                    f"QPS {s['qps']:.0f}  load {s['load_avg']:.1f}"
                )
        finally:
            writer.stop()
            stop.set()
            searcher.join(timeout=30)
            if searcher.is_alive():
                searcher.kill()
            client.close()
        out["writer"] = {
            "upserted": writer.upserted,
            "deleted": writer.removed,
            "reinserted": writer.reinserted,
            "skipped_ticks": writer.skipped_ticks,
            "errors": len(writer.errors),
            "first_error": writer.errors[0] if writer.errors else None,
        }
        out["search_errors"] = errors.value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--rate", type=float, default=100, help="rows written per second (upserts + re-inserts)")
    ap.add_argument("--deleted", type=float, default=0.02, help="fraction of the keys deleted at any time")
    ap.add_argument("--sample", type=float, default=15, help="seconds between samples")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE deployment setting (repeatable)")
    ap.add_argument(
        "--wal-segment-ms",
        type=int,
        default=0,
        help="set segment.ms on the WAL topic (0: the broker's default)",
    )
    ap.add_argument("--out", default="soak", help="results name under bench/results/")
    args = ap.parse_args()
    if not console.is_terminal:  # a log file: wide enough that the lines and tables do not wrap
        console.width = max(console.width, 170)
    env = dict(SETTINGS)
    env.update(kv.split("=", 1) for kv in args.env)
    console.print("settings: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    out = soak(args, env)
    out["verdict"] = verdict(out, min(10.0, args.minutes / 3))
    report(out)
    RESULTS.mkdir(exist_ok=True)
    console.print(f"saved {save(args.out, out)}")  # before the plot: a missing matplotlib loses no run
    plot(out, RESULTS / f"{args.out}.png")
    console.print(f"saved {RESULTS / f'{args.out}.png'}")


if __name__ == "__main__":
    main()
