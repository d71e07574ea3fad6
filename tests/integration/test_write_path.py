"""The write path against a real broker: WAL -> Faust worker -> Delta, exactly once."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from schemas.collection import CollectionSchema, FieldSchema
from schemas.types import DataType
from streams.live import live_rows
from walvus.storage import DELETES, ROWS

pytestmark = pytest.mark.integration
DIM = 8


def _schema() -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=DIM),
            FieldSchema("version", DataType.INT64),
        )
    )


class Model:
    """What the log says: the expected live rows, kept by the test."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}
        self.version = 0

    def rows(self, keys: np.ndarray) -> dict:
        self.version += 1
        for k in keys.tolist():
            self.live[k] = self.version
        return {
            "id": keys,
            "v": np.random.rand(len(keys), DIM).astype("float32"),
            "version": np.full(len(keys), self.version),
        }

    def delete(self, keys: np.ndarray) -> list[int]:
        for k in keys.tolist():
            self.live.pop(k, None)
        return keys.tolist()


def _write_mix(api, name: str, model: Model, total: int, rng: random.Random, key_space: int) -> int:
    written = 0
    while written < total:
        op = rng.random()
        n = rng.randint(200, 1500)
        keys = np.unique(np.array([rng.randrange(key_space) for _ in range(n)], dtype=np.int64))
        if op < 0.5:
            api.insert(name, model.rows(keys))
        elif op < 0.85:
            api.upsert(name, model.rows(keys))
        else:
            api.delete(name, model.delete(keys))
        written += len(keys)
    return written


def _check_delta(api, name: str, model: Model) -> None:
    info = api.catalog.require(name)
    live = live_rows(api.store, info)
    got = dict(zip(live.column("id").to_pylist(), live.column("version").to_pylist(), strict=True))
    assert len(got) == live.num_rows, "a key has two live rows"
    assert got == model.live
    for kind in (ROWS, DELETES):
        t = api.store.read(info.collection_id, kind, columns=["_shard", "_seq"])
        if t is not None and t.num_rows:  # (shard, seq) names one WAL row (or tombstone)
            distinct = t.group_by(["_shard", "_seq"]).aggregate([]).num_rows
            assert distinct == t.num_rows, f"duplicate records in {kind}"


def _check_commits(api, name: str) -> None:
    """No segment was committed twice: per shard, commits cover increasing, disjoint offset ranges."""
    info = api.catalog.require(name)
    for kind in (ROWS, DELETES):
        dt = api.store.open(info.collection_id, kind)
        last: dict[str, int] = {}
        for entry in sorted(dt.history(), key=lambda h: h["version"]):
            if "shard" not in entry:
                continue
            shard, lo, hi = entry["shard"], int(entry["first_offset"]), int(entry["last_offset"])
            assert hi >= lo
            assert hi > last.get(shard, -1), f"{kind}: shard {shard} committed offset {hi} twice"
            last[shard] = hi


def test_mixed_writes_across_two_shards_read_back_exactly(deployment):
    deployment.start("streams")
    api = deployment.api()
    api.create_collection("mix", _schema(), shards_num=2)
    model = Model()
    written = _write_mix(api, "mix", model, 100_000, random.Random(7), key_space=30_000)
    assert written >= 100_000
    api.flush(["mix"], timeout=180)
    _check_delta(api, "mix", model)
    _check_commits(api, "mix")
    # tombstones hide earlier versions: every deleted key that was never rewritten is absent
    info = api.catalog.require("mix")
    tombs = api.store.read(info.collection_id, DELETES)
    assert tombs.num_rows > 0
    live = live_rows(api.store, info).column("id").to_pylist()
    assert set(live) == set(model.live)


def _rows_version(api, name: str) -> int:
    dt = api.store.open(api.catalog.require(name).collection_id, ROWS)
    return -1 if dt is None else dt.version


def _wait_commits(api, name: str, after: int, commits: int, timeout: float = 120) -> int:
    """Wait until the rows table has ``commits`` more versions than ``after``; returns the version."""
    deadline = time.monotonic() + timeout
    while (version := _rows_version(api, name)) < after + commits:
        if time.monotonic() > deadline:
            raise TimeoutError(f"rows table of {name} still at version {version} after {timeout}s")
        time.sleep(0.1)
    return version


def test_kill9_streams_worker_three_times_after_commits_loses_and_duplicates_nothing(deployment):
    """Each kill lands after this worker committed segments, while rows keep coming; the replay
    after each restart skips what Delta holds, so every acknowledged row is there exactly once."""
    # seal by size every few batches (segment max 1 MB x 0.12), and idle shards at once
    deployment.env.update(WALVUS_SEGMENT_MAX_SIZE_MB="1", WALVUS_SEAL_IDLE_SECONDS="0.3")
    deployment.start("streams")
    api = deployment.api()
    api.create_collection("crash", _schema(), shards_num=2)
    cid = api.catalog.require("crash").collection_id
    model = Model()
    written = [0]  # insert and upsert rows acknowledged: each is one row version in the rows table
    stop = threading.Event()
    errors: list[BaseException] = []

    def producer() -> None:
        rng = random.Random(11)
        try:
            while not stop.is_set():
                keys = np.unique(np.array([rng.randrange(20_000) for _ in range(rng.randint(200, 1500))]))
                if rng.random() < 0.85:
                    (api.insert if rng.random() < 0.6 else api.upsert)("crash", model.rows(keys))
                    written[0] += len(keys)
                else:
                    api.delete("crash", model.delete(keys))
                time.sleep(0.02)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=producer)
    t.start()
    kills: list[tuple[int, dict[int, int]]] = []
    try:
        version = -1
        for _ in range(3):
            version = _wait_commits(api, "crash", version, commits=3)  # this worker committed segments
            time.sleep(random.uniform(0.0, 1.0))
            deployment.kill("streams")
            version = _rows_version(api, "crash")
            kills.append((version, {s: api.store.committed_offset(cid, ROWS, s) for s in (0, 1)}))
            deployment.start("streams")
        _wait_commits(api, "crash", version, commits=3)  # the last worker commits too
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    assert [v for v, _ in kills] == sorted({v for v, _ in kills}), "no commit between two kills"
    assert all(max(offsets.values()) >= 0 for _, offsets in kills)
    api.flush(["crash"], timeout=240)
    _check_delta(api, "crash", model)
    _check_commits(api, "crash")
    rows = api.store.read(cid, ROWS, columns=["_seq"])
    assert rows.num_rows == written[0], "a row version was lost or written twice"
    for _, offsets in kills:  # the replays resumed past what was committed before each kill
        for shard, offset in offsets.items():
            assert api.store.committed_offset(cid, ROWS, shard) >= offset

    # what a pymilvus user sees: exactly the live rows
    deployment.start("gateway")
    client = MilvusClient(deployment.uri)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_index("crash", idx, sync=False)  # no indexer runs: the searcher scans the segments
    client.load_collection("crash")
    got = client.query("crash", filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert got[0]["count(*)"] == len(model.live)
    client.close()


def test_streams_worker_survives_collections_created_while_it_catches_up(deployment):
    """Each new collection's WAL topic is subscribed while the worker works through a backlog:
    aiokafka drops the assignment until the rebalance ends while Faust still hands out fetched
    records, which raised "Partition is not assigned" and killed the worker (seen without the
    guard in streams/revoked.py). Those records are read again after the rebalance: nothing is lost."""
    api = deployment.api()
    api.create_collection("busy", _schema(), shards_num=8)
    model = Model()
    for i in range(2500):  # 20,000 WAL records waiting for the worker
        api.insert("busy", model.rows(np.arange(i * 16, (i + 1) * 16, dtype=np.int64)))
    deployment.start("streams")
    time.sleep(3)  # pacing, not an assertion: the worker is busy with the backlog now
    others: dict[str, Model] = {}
    for i in range(20):
        name = f"new{i}"
        api.create_collection(name, _schema(), shards_num=2)
        others[name] = Model()
        api.insert(name, others[name].rows(np.arange(i * 10, i * 10 + 50, dtype=np.int64)))
        time.sleep(0.3)  # pacing: one rebalance after another
    api.flush(["busy", *others], timeout=240)
    assert deployment.procs["streams"].poll() is None, deployment.log_tail("streams")
    assert "Partition is not assigned" not in (deployment.root / "streams.log").read_text()
    _check_delta(api, "busy", model)
    _check_commits(api, "busy")
    for name, m in others.items():
        _check_delta(api, name, m)
