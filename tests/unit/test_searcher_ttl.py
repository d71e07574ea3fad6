"""Collection TTL in the searcher: rows older than ``collection.ttl.seconds`` leave every read."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from schemas.catalog import TTL_PROPERTY, CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema
from schemas.timestamps import compose
from schemas.types import DataType
from schemas.wal import Op, WalHeader, WalRecord
from searcher.collection import LoadedCollection, ShardState
from tests.clock import FakeClock

SCHEMA = CollectionSchema(
    fields=(FieldSchema("id", DataType.INT64, is_primary=True), FieldSchema("n", DataType.INT64))
)


def _record(ids: list[int], age_s: float) -> WalRecord:
    ts = compose(int((time.time() - age_s) * 1000))
    header = WalHeader(op=Op.INSERT, collection="c", collection_id=1, schema_version=1, ts=ts)
    return WalRecord(
        header, pa.record_batch({"id": pa.array(ids, pa.int64()), "n": pa.array(ids, pa.int64())})
    )


def _live_ids(coll: LoadedCollection, at_ts: int | None = None) -> list[int]:
    out: list[int] = []
    for c, mask in coll.snapshot(at_ts):
        out += np.asarray(c.pks.to_numpy())[mask].tolist()
    return sorted(out)


def test_rows_older_than_the_ttl_are_not_read():
    coll = LoadedCollection(CollectionInfo("c", 1, SCHEMA, properties={TTL_PROPERTY: "60"}), store=None)  # type: ignore[arg-type]
    coll.shards = {0: ShardState()}
    coll.apply(0, 0, _record([1, 2], age_s=120))  # expired
    coll.apply(0, 1, _record([3], age_s=30))
    coll.apply(0, 2, _record([2, 4], age_s=1))  # re-written: a fresh version of 2
    assert _live_ids(coll) == [2, 3, 4]
    # an iterator's pinned snapshot judges age at its own timestamp
    assert _live_ids(coll, compose(int((time.time() - 100) * 1000))) == [1, 2]
    coll.update_info(coll.info.evolve("alter", properties={TTL_PROPERTY: "0"}))  # 0: rows never expire
    assert _live_ids(coll) == [1, 2, 3, 4]


def test_a_row_expires_when_the_clock_passes_its_ttl():
    clock = FakeClock()
    info = CollectionInfo("c", 1, SCHEMA, properties={TTL_PROPERTY: "60"})
    coll = LoadedCollection(info, store=None, clock=clock)  # type: ignore[arg-type]
    coll.shards = {0: ShardState()}
    written = compose(int(clock.now() * 1000))
    header = WalHeader(op=Op.INSERT, collection="c", collection_id=1, schema_version=1, ts=written)
    coll.apply(0, 0, WalRecord(header, pa.record_batch({"id": pa.array([7]), "n": pa.array([7])})))
    clock.advance(60)  # exactly the TTL: still read
    assert _live_ids(coll) == [7]
    clock.advance(1)
    assert _live_ids(coll) == []
