"""Garbage collection and outside readers against a real deployment: Kafka broker, streams worker,
indexer (which runs the collector), gateway, Delta tables, FAISS, and pymilvus.

- records below what Delta holds leave the WAL (its low watermark rises), and a searcher that
  loads afresh still returns exactly the live rows;
- dropping an index removes its files; dropping a collection removes its tables, index dir and
  WAL topic, while other collections go on;
- polars' native reader, pyarrow and DuckDB read a rows table with several vector types, and the
  README's live-rows SQL returns what walvus's query returns;
- a WAL tail whose next records were deleted says so (the searcher then reloads from Delta).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from pymilvus import DataType, MilvusClient

from schemas.live import live_rows_sql
from schemas.topics import wal_topic
from searcher.tail import WalTail
from walvus.log import KafkaLog, LogMessage
from walvus.retention import WalRetention
from walvus.storage import DELETES, ROWS

pytestmark = pytest.mark.integration
DIM = 8
GC_ENV = {
    "WALVUS_GC_INTERVAL_SECONDS": "1",
    "WALVUS_GC_DROPPED_RETENTION_SECONDS": "0",
    "WALVUS_GC_WAL_RETENTION_SECONDS": "0",
    "WALVUS_SEAL_IDLE_SECONDS": "600",  # rows are sealed by flushes only
}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s")
        time.sleep(0.25)


def _schema(client: MilvusClient):  # noqa: ANN202
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("half", DataType.FLOAT16_VECTOR, dim=DIM)
    schema.add_field("bits", DataType.BINARY_VECTOR, dim=16)
    schema.add_field("version", DataType.INT64)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=8)
    schema.add_field("doc", DataType.JSON, nullable=True)
    return schema


def _index_params(client: MilvusClient):  # noqa: ANN202
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_idx")
    idx.add_index("half", index_type="FLAT", metric_type="L2", index_name="half_idx")
    idx.add_index("bits", index_type="BIN_FLAT", metric_type="HAMMING", index_name="bits_idx")
    return idx


class Model:
    """The live rows the test expects: key -> version."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}
        self.vectors: dict[int, list[float]] = {}
        self.version = 0

    def rows(self, keys: list[int]) -> list[dict]:
        self.version += 1
        rng = np.random.default_rng(self.version)
        out = []
        for k in keys:
            vec = rng.random(DIM, dtype=np.float32)
            self.live[k], self.vectors[k] = self.version, vec.tolist()
            out.append(
                {
                    "id": k,
                    "vec": vec.tolist(),
                    "half": vec.astype(np.float16),
                    "bits": bytes([k % 256, self.version % 256]),
                    "version": self.version,
                    "tags": ["a", "b"][: k % 3],
                    "doc": None if k % 7 == 0 else {"k": k},
                    "color": "red" if k % 2 else "blue",
                }
            )
        return out

    def delete(self, keys: list[int]) -> list[int]:
        for k in keys:
            self.live.pop(k, None)
        return keys


def _live(client: MilvusClient, name: str) -> dict[int, int]:
    got = client.query(
        name, filter="id >= 0", output_fields=["version"], limit=16384, consistency_level="Strong"
    )
    out = {r["id"]: r["version"] for r in got}
    assert len(out) == len(got), "a key was returned twice"
    return out


def test_wal_truncated_below_delta_and_a_fresh_searcher_still_returns_exact_data(deployment) -> None:
    deployment.env.update(GC_ENV)
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    api = deployment.api()
    client.create_collection("docs", schema=_schema(client), index_params=_index_params(client), num_shards=2)
    client.create_partition("docs", "extra")
    model = Model()
    client.insert("docs", model.rows(list(range(400))))
    client.upsert("docs", model.rows(list(range(0, 400, 3))))
    client.delete("docs", ids=model.delete(list(range(0, 400, 10))))
    client.insert("docs", model.rows(list(range(1000, 1050))), partition_name="extra")
    client.flush("docs")
    client.release_collection("docs")
    extra = ds.field("_partition") == "extra"
    cid = api.catalog.require("docs").collection_id
    assert api.store.read(cid, ROWS, filter=extra).num_rows == 50
    client.drop_partition("docs", "extra")  # its rows leave the rows table too
    model.delete(list(range(1000, 1050)))
    client.upsert("docs", model.rows(list(range(1, 400, 5))))
    client.delete("docs", ids=model.delete(list(range(2, 400, 11))))
    client.flush("docs")

    info = api.catalog.require("docs")
    topic = wal_topic(api.ns, info.collection_id)
    retention = WalRetention(api.kafka.conf)
    try:
        ends = api.kafka.end_offsets(topic, 2)

        def replay_start() -> dict[int, int]:
            cid = info.collection_id
            return {
                s: min(api.store.committed_offset(cid, k, s) for k in (ROWS, DELETES)) + 1 for s in range(2)
            }

        # the flushes committed everything to Delta: the collector deletes every record below
        wait_for("flushes committed", lambda: all(replay_start()[s] >= ends[s] - 1 for s in range(2)))
        wait_for(
            "low watermarks at what Delta holds",
            lambda: all(m.low == replay_start()[s] > 0 for s, m in retention.watermarks(topic, 2).items()),
        )
        lows = {s: m.low for s, m in retention.watermarks(topic, 2).items()}
        wait_for(
            "rows of the dropped partition deleted from Delta",
            lambda: (
                api.store.read(info.collection_id, ROWS, filter=ds.field("_partition") == "extra").num_rows
                == 0
            ),
        )
        shown = subprocess.run(
            [sys.executable, "-m", "walvus", "inspect", "storage", "docs"],
            env={**os.environ, **deployment.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        assert f"docs rows table: {api.store.table_uri(info.collection_id, ROWS)}\n" in shown.stdout
        assert f"docs deletes table: {api.store.table_uri(info.collection_id, DELETES)}\n" in shown.stdout
        assert f"docs index dir: {api.store.indexes.location(info.collection_id)}\n" in shown.stdout
        assert f"docs WAL topic: {topic} (offsets kept per shard: 0: {lows[0]}..{ends[0]}" in shown.stdout

        # rows written after the truncation come from the WAL, above the low watermark
        client.upsert("docs", model.rows([3, 4, 5, 2000]))
        client.delete("docs", ids=model.delete([7]))
        client.load_collection("docs")
        assert _live(client, "docs") == model.live
        client.release_collection("docs")
        client.load_collection("docs")  # a fresh load: Delta up to the committed offsets, then the WAL
        assert _live(client, "docs") == model.live
        hit = client.search(
            "docs", data=[model.vectors[2000]], anns_field="vec", limit=1, consistency_level="Strong"
        )
        assert hit[0][0]["id"] == 2000
        assert {s: m.low for s, m in retention.watermarks(topic, 2).items()} == lows  # nothing unflushed went

        # outside readers: polars' native reader and pyarrow read the rows table; the live-rows SQL
        # over the Delta tables (DuckDB and polars SQL) returns exactly what walvus's query returns
        client.flush("docs")
        rows_uri, dels_uri = (api.store.table_uri(info.collection_id, k) for k in (ROWS, DELETES))
        native = pl.read_delta(rows_uri)
        assert native.schema["vec"] == pl.List(pl.Float32) and native.schema["half"] == pl.Binary
        assert native.height == DeltaTable(rows_uri).to_pyarrow_table().num_rows > len(model.live)
        rows = DeltaTable(rows_uri).to_pyarrow_dataset()  # noqa: F841 - DuckDB scans it by name
        deletes = DeltaTable(dels_uri).to_pyarrow_dataset()  # noqa: F841
        sql = live_rows_sql("id")
        by_duckdb = dict(duckdb.sql(f"SELECT id, version FROM ({sql})").fetchall())
        assert by_duckdb == model.live == _live(client, "docs")
        ctx = pl.SQLContext(rows=pl.scan_delta(rows_uri), deletes=pl.scan_delta(dels_uri))
        by_polars = ctx.execute(f'SELECT id, version, "$meta" FROM ({sql}) AS live').collect()
        assert dict(zip(by_polars["id"].to_list(), by_polars["version"].to_list(), strict=True)) == model.live
        assert {json.loads(m)["color"] for m in by_polars["$meta"].to_list()} == {"red", "blue"}
    finally:
        retention.close()
        client.close()


def test_dropped_index_and_collection_leave_disk_and_log(deployment) -> None:
    deployment.env.update(GC_ENV)
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    api = deployment.api()
    model = Model()
    for name in ("gone", "stays"):
        client.create_collection(name, schema=_schema(client), index_params=_index_params(client))
        client.insert(name, model.rows(list(range(200))))
        client.flush(name)
    gone = api.catalog.require("gone")
    index_dir = Path(api.store.indexes.location(gone.collection_id))
    old_id = gone.indexes["vec"].index_id

    def files_of(index_id: int) -> list[str]:
        return [p.name for p in index_dir.iterdir() if p.name.endswith(f"_vec_{index_id}.faiss")]

    wait_for("index files built", lambda: index_dir.is_dir() and len(files_of(old_id)) > 0)
    client.release_collection("gone")
    client.drop_index("gone", "vec_idx")
    wait_for("files of the dropped index removed", lambda: files_of(old_id) == [])
    assert any(p.name.endswith(".faiss") for p in index_dir.iterdir())  # the other fields' indexes stay

    topic = wal_topic(api.ns, gone.collection_id)
    table_dir = api.store.collection_uri(gone.collection_id)
    assert topic in api.kafka.topics() and DeltaTable(api.store.table_uri(gone.collection_id, ROWS))
    client.drop_collection("gone")
    wait_for(
        "tables, index dir and WAL topic of the dropped collection gone",
        lambda: not api.store.collection_exists(gone.collection_id) and topic not in api.kafka.topics(),
    )
    assert not index_dir.exists() and not os.path.exists(table_dir)

    # the rest goes on: writes, seals and reads of the other collection, and a new one of the old name
    client.upsert("stays", model.rows([1, 2, 3]))
    client.flush("stays")
    client.load_collection("stays")
    assert len(_live(client, "stays")) == 200
    client.create_collection("gone", schema=_schema(client), index_params=_index_params(client))
    client.insert("gone", model.rows([5]))
    client.load_collection("gone")
    assert _live(client, "gone") == {5: model.version}
    # the streams worker stopped reading the dropped WAL at the drop, before the topic went
    assert "not found in cluster metadata" not in deployment.log_tail("streams", 1000)
    client.close()


def test_a_tail_whose_next_records_were_deleted_reports_it(kafka_bootstrap) -> None:
    kafka = KafkaLog({"bootstrap.servers": kafka_bootstrap})
    topic = f"t{time.monotonic_ns()}.wal.1"
    kafka.ensure_topic(topic, 1)
    kafka.append([LogMessage(topic, 0, b"x") for _ in range(10)])
    retention = WalRetention(kafka.conf)
    assert retention.delete_records(topic, {0: 6}) == {0: 6}
    assert retention.offsets_at(topic, 1, 0) == {0: 6}  # the first record still stored
    assert retention.offsets_at(topic, 1, int(time.time() * 1000) + 3600_000) == {0: 10}  # none yet: the end
    truncated = threading.Event()
    tail = WalTail(
        kafka.conf, apply=lambda *a: None, truncated=lambda t: truncated.set() if t == topic else None
    )
    tail.start()
    try:
        tail.assign(topic, {0: 2})
        assert truncated.wait(30), "the tail jumped over deleted records without a word"
    finally:
        tail.stop()
        retention.close()
        kafka.delete_topic(topic)
        kafka.close()


def test_a_searcher_left_behind_by_the_truncation_reloads_from_delta(deployment) -> None:
    """A gateway frozen (SIGSTOP) while rows are written, sealed and truncated from the WAL wakes up
    below the new low watermark: it reloads the collection from Delta and answers exactly."""
    deployment.env.update(GC_ENV)
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    api = deployment.api()
    client.create_collection("docs", schema=_schema(client), index_params=_index_params(client))
    model = Model()
    client.insert("docs", model.rows(list(range(100))))
    assert _live(client, "docs") == model.live  # loaded, tailing the WAL
    info = api.catalog.require("docs")
    topic = wal_topic(api.ns, info.collection_id)
    retention = WalRetention(api.kafka.conf)
    gateway = deployment.procs["gateway"]
    os.killpg(gateway.pid, signal.SIGSTOP)
    try:
        api.upsert("docs", [{**r, "half": r["half"].tobytes()} for r in model.rows(list(range(50, 150)))])
        api.delete("docs", model.delete(list(range(0, 20))))
        api.flush(["docs"])
        end = api.kafka.end_offsets(topic, 1)[0]
        wait_for(
            "the WAL truncated past the frozen searcher", lambda: retention.watermarks(topic, 1)[0].low == end
        )
    finally:
        os.killpg(gateway.pid, signal.SIGCONT)
        retention.close()

    def exact() -> bool:
        try:
            return _live(client, "docs") == model.live
        except Exception:  # a Strong read may time out while the old copy waits for the reload
            return False

    wait_for("the searcher reloaded from Delta", exact, timeout=120)
    assert "reloading collection from Delta" in deployment.log_tail("gateway", 400)
    client.close()
