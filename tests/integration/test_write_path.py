"""The write path against a real broker: WAL -> Faust worker -> Delta, exactly once."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pyarrow.compute as pc
import pytest

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
        if t is not None and t.num_rows:
            keys = pc.add(pc.multiply(t.column("_shard").cast("int64"), 1 << 62), t.column("_seq"))
            assert pc.count_distinct(keys).as_py() == t.num_rows, f"duplicate records in {kind}"


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


def test_kill9_streams_worker_three_times_loses_and_duplicates_nothing(deployment):
    deployment.start("streams")
    api = deployment.api()
    api.create_collection("crash", _schema(), shards_num=2)
    model = Model()
    stop = threading.Event()
    errors: list[BaseException] = []

    def producer() -> None:
        rng = random.Random(11)
        try:
            while not stop.is_set():
                _write_mix(api, "crash", model, 2000, rng, key_space=20_000)
                time.sleep(0.02)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=producer)
    t.start()
    try:
        for _ in range(3):
            time.sleep(random.uniform(2.0, 5.0))
            deployment.kill("streams")
            time.sleep(0.5)
            deployment.start("streams")
        time.sleep(2)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    api.flush(["crash"], timeout=240)
    _check_delta(api, "crash", model)
    _check_commits(api, "crash")
