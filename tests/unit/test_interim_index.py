"""Interim indexes of growing rows: the HNSW itself, the searcher's growing chunks and their
background fill, and k-NN over growing data compared with exact search."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from indexer import brute_force_search
from indexer.interim import InterimBuilder
from schemas.catalog import CollectionInfo, IndexInfo
from schemas.collection import CollectionSchema, FieldSchema
from schemas.types import DataType
from schemas.wal import Op, WalHeader, WalRecord
from searcher.collection import CHUNK_ROWS, LoadedCollection, ShardState
from searcher.handoff import remaining
from searcher.interim import PROPERTY, InterimSettings, interim_fields
from searcher.search import knn

DIM = 16
SCHEMA = CollectionSchema(
    fields=(
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM),
    )
)


def _info(metric: str = "L2", index_type: str = "HNSW", **props: str) -> CollectionInfo:
    idx = IndexInfo("vec", "vec", index_type, metric, {"M": 16, "efConstruction": 64}, index_id=1)
    return CollectionInfo("c", 7, SCHEMA, indexes={"vec": idx}, properties=dict(props))


def _record(ids: np.ndarray, vectors: np.ndarray, op: Op = Op.INSERT) -> WalRecord:
    header = WalHeader(op=op, collection="c", collection_id=7, schema_version=1, ts=int(ids[0]) + 1)
    batch = pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), DIM),
        }
    )
    return WalRecord(header, batch)


def _collection(metric: str = "L2", min_rows: int = 256) -> LoadedCollection:
    settings = InterimSettings(min_rows=min_rows, publish_seconds=0)
    coll = LoadedCollection(_info(metric), store=None, interim_settings=settings)  # type: ignore[arg-type]
    coll.shards = {0: ShardState()}
    return coll


def _fill(coll: LoadedCollection) -> None:
    while coll.fill_interim():
        pass
    time.sleep(0.1)  # copies are spaced by ten times the last copy's time
    coll.fill_interim()  # publishes what is left


def _search(coll: LoadedCollection, q: np.ndarray, k: int, metric: str, ef: int, interim: bool = True):
    view = coll.snapshot()
    lookup = coll.interim.lookup("vec") if interim else None
    d, refs, used = knn(view, SCHEMA, "vec", q, k, metric, {"ef": ef}, lookup)
    starts = np.cumsum([0] + [c.num_rows for c in used])
    pks = np.concatenate([c.pks.to_numpy() for c in used]) if used else np.zeros(0, np.int64)
    return d, np.where(refs >= 0, pks[np.maximum(refs, 0)], -1), starts


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_interim_index_with_a_generous_ef_equals_exact_search(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    q = rng.standard_normal((20, DIM)).astype(np.float32)
    work = InterimBuilder(DIM, metric, start=100)
    for s in range(0, len(x), 250):
        work.add(x[s : s + 250])
    ix = work.publish()
    work.add(x[:10])  # later adds do not reach a published copy
    assert (ix.start, ix.ntotal, ix.end, work.end) == (100, 3000, 3100, 3110)
    bits = rng.random(3000) < 0.7
    qq = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "COSINE" else q
    _, labels = ix.search(qq, 10, bits, ef=800)
    xx = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "COSINE" else x
    _, exact = brute_force_search(xx, qq, 10, "L2" if metric == "L2" else "IP", allowed=bits)
    assert np.array_equal(labels, exact)
    assert bits[labels].all()


def test_rows_past_the_bitmap_are_never_returned():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2000, DIM)).astype(np.float32)
    work = InterimBuilder(DIM, "L2", start=0)
    work.add(x)
    ix = work.publish()
    _, labels = ix.search(x[1500:1510], 5, np.ones(1000, bool), ef=64)  # a snapshot of the first 1000
    assert (labels < 1000).all() and (labels >= 0).all()


def test_which_fields_get_an_interim_index():
    assert interim_fields(_info(), InterimSettings()) == {"vec": "L2"}
    assert interim_fields(_info(index_type="FLAT"), InterimSettings()) == {}  # FLAT promises exact results
    assert interim_fields(_info(**{PROPERTY: "false"}), InterimSettings()) == {}
    assert interim_fields(_info(), InterimSettings(enabled=False)) == {}
    f16 = CollectionSchema(fields=(SCHEMA.fields[0], FieldSchema("vec", DataType.FLOAT16_VECTOR, dim=DIM)))
    info = _info()
    assert interim_fields(CollectionInfo("c", 7, f16, indexes=info.indexes), InterimSettings()) == {}


@pytest.mark.parametrize("metric", ["L2", "COSINE"])
def test_growing_search_through_the_interim_index_equals_exact_and_skips_dead_rows(metric):
    rng = np.random.default_rng(3)
    coll = _collection(metric)
    vectors = rng.standard_normal((CHUNK_ROWS + 3000, DIM)).astype(np.float32)
    offset = 0
    for s in range(0, len(vectors), 500):  # 100-row records merge into chunks as they pile up
        ids = np.arange(s, min(s + 500, len(vectors)))
        coll.apply(0, offset, _record(ids, vectors[ids]))
        offset += 1
    growing = [c for c in coll.containers if not c.sealed]
    sizes = [c.num_rows for c in growing]
    assert 1 < len(sizes) <= 6 and sizes == sorted(sizes, reverse=True)  # a binary counter of chunks
    assert [c.gstart for c in growing] == list(np.cumsum([0] + [c.num_rows for c in growing[:-1]]))
    # upserts of keys held in chunks: the old versions die, the new ones are live
    upd = np.arange(0, 400, 4)
    coll.apply(0, offset, _record(upd, -vectors[upd], Op.UPSERT))
    offset += 1
    _fill(coll)
    assert coll.interim.rows() == len(vectors) + len(upd)
    q = vectors[rng.choice(len(vectors), 25)] + 0.01
    d_i, ids_i, _ = _search(coll, q, 10, metric, ef=600)
    d_e, ids_e, _ = _search(coll, q, 10, metric, ef=600, interim=False)
    assert np.array_equal(ids_i, ids_e)
    np.testing.assert_allclose(d_i, d_e, rtol=1e-4, atol=1e-4)
    for row in ids_i:
        assert len(set(row.tolist())) == len(row)  # one live row per key


def test_rows_applied_after_the_last_fill_are_searched_exactly():
    rng = np.random.default_rng(4)
    coll = _collection("L2")
    vectors = rng.standard_normal((3000, DIM)).astype(np.float32)
    coll.apply(0, 0, _record(np.arange(2000), vectors[:2000]))
    _fill(coll)
    coll.apply(0, 1, _record(np.arange(2000, 3000), vectors[2000:]))  # not in the index yet
    assert coll.interim.rows() == 2000
    q = vectors[2500:2510]
    _, ids, _ = _search(coll, q, 1, "L2", ef=64)
    assert ids[:, 0].tolist() == list(range(2500, 2510))


def test_hand_overs_close_generations_and_every_row_is_added_once():
    rng = np.random.default_rng(5)
    coll = _collection("L2")
    vectors = rng.standard_normal((5000, DIM)).astype(np.float32)
    for i, s in enumerate(range(0, 3000, 1000)):
        coll.apply(0, i, _record(np.arange(s, s + 1000), vectors[s : s + 1000]))
    _fill(coll)
    (first,) = coll.interim.lookup("vec")(0)  # type: ignore[misc]
    assert (first.start, first.ntotal) == (0, 3000)

    def hand_over(upto: int) -> None:  # what a swap does to the growing rows, then to the index
        growing = [c for c in coll.containers if not c.sealed]
        coll.containers = tuple(remaining(growing, upto, "id"))
        coll.interim.handed_over(0)

    hand_over(1)  # positions 0..1999 leave; 2000..2999 stay in the closed first generation
    for i, s in enumerate(range(3000, 5000, 1000), start=3):
        coll.apply(0, i, _record(np.arange(s, s + 1000), vectors[s : s + 1000]))
    _fill(coll)
    gens = coll.interim.lookup("vec")(0)  # type: ignore[misc]
    assert [(g.start, g.ntotal) for g in gens] == [(0, 3000), (3000, 2000)]  # nothing added twice
    assert coll.interim.rows() == 5000
    _, ids, _ = _search(coll, vectors[[2100, 2500, 3100, 4900]], 1, "L2", ef=64)
    assert ids[:, 0].tolist() == [2100, 2500, 3100, 4900]
    hand_over(2)  # the rest of the first generation's rows leave: so does the generation
    _fill(coll)
    assert [(g.start, g.ntotal) for g in coll.interim.lookup("vec")(0)] == [(3000, 2000)]  # type: ignore[misc]
    _, ids, _ = _search(coll, vectors[[3100, 4900]], 1, "L2", ef=64)
    assert ids[:, 0].tolist() == [3100, 4900]


def test_interim_index_off_by_property_searches_exactly():
    coll = LoadedCollection(_info(**{PROPERTY: "false"}), store=None)  # type: ignore[arg-type]
    assert coll.interim.lookup("vec") is None and not coll.fill_interim()
