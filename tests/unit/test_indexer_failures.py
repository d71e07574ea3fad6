"""The index worker against real Delta tables and FAISS in tmp_path: a failing item fails alone.

No Kafka: the catalog is a dict and the segments topic a list; the clock is the test's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from indexer.failures import Backoff, IndexFailures
from indexer.worker import IndexWorker
from schemas.catalog import CollectionInfo, IndexInfo
from schemas.collection import CollectionSchema, FieldSchema
from schemas.segments import IndexFailed, decode_announcement
from schemas.types import DataType as D
from schemas.vector_arrays import arrow_vectors
from walvus.index_progress import index_progress
from walvus.index_store import FAILURE
from walvus.storage import ROWS, SegmentStore

DIM = 8
SCHEMA = CollectionSchema(
    fields=(
        FieldSchema("id", D.INT64, is_primary=True),
        FieldSchema("vec", D.FLOAT_VECTOR, dim=DIM),
        FieldSchema("name", D.VARCHAR, max_length=16),
    )
)


class FakeCatalog:
    def __init__(self, *infos: CollectionInfo) -> None:
        self.infos = {i.name: i for i in infos}

    def collections(self) -> list[CollectionInfo]:
        return list(self.infos.values())

    def get(self, name: str) -> CollectionInfo | None:
        return self.infos.get(name)

    def by_id(self, collection_id: int) -> CollectionInfo | None:
        return next((i for i in self.infos.values() if i.collection_id == collection_id), None)

    def add_listener(self, fn: object) -> None:
        pass


class FakeLog:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def append(self, messages: list) -> None:
        self.sent += [decode_announcement(m.value) for m in messages]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _info(name: str, cid: int, vec_index: IndexInfo) -> CollectionInfo:
    scalar = IndexInfo("name", "name_idx", "INVERTED", "", {}, index_id=cid * 10 + 2)
    return CollectionInfo(name, cid, SCHEMA, indexes={"vec": vec_index, "name": scalar})


def _seal(store: SegmentStore, cid: int, segment: int, n: int) -> None:
    rng = np.random.default_rng(segment)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * DIM, dtype=np.float32)), DIM)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "vec": vec,
            "name": pa.array([f"n{i}" for i in range(n)]),
            "_seq": pa.array(np.arange(n, dtype=np.int64) + segment * 1000),
            "_segment": pa.array(np.full(n, segment, dtype=np.int64)),
        }
    )
    store.append(cid, ROWS, table, shard=0, last_offset=segment, metadata={"segment": segment})


@pytest.fixture
def setup(tmp_path: Path):
    store = SegmentStore(str(tmp_path / "tables"))
    # an index no segment can be built with (IVF_PQ's m must divide dim), as an old or foreign catalog may hold
    broken = _info(
        "broken", 1, IndexInfo("vec", "vec_idx", "IVF_PQ", "L2", {"m": 3, "nlist": 4}, index_id=11)
    )
    healthy = _info("healthy", 2, IndexInfo("vec", "vec_idx", "FLAT", "L2", {}, index_id=21))
    for cid in (1, 2):
        _seal(store, cid, segment=1, n=50)
        _seal(store, cid, segment=2, n=30)
    clock = Clock()
    kafka = FakeLog()
    worker = IndexWorker(kafka, FakeCatalog(broken, healthy), store, "ns")  # type: ignore[arg-type]
    worker.failures = IndexFailures(Backoff(5, 300), clock=clock)
    return worker, store, broken, healthy, clock, kafka


def _failures(collection: str) -> float:
    value = REGISTRY.get_sample_value("walvus_indexer_build_failures_total", {"collection": collection})
    return value or 0.0


def test_backoff_doubles_from_first_up_to_most() -> None:
    b = Backoff(5, 300)
    assert [b.delay(a) for a in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    with pytest.raises(ValueError, match="0 < first <= most"):
        Backoff(10, 5)


def test_a_failing_collection_does_not_stop_the_others(setup) -> None:
    worker, store, broken, healthy, clock, kafka = setup
    before = _failures("broken")
    assert worker.reconcile() == 2  # the healthy collection's two segments; scalar indexes are not built
    for seg in (1, 2):
        assert store.indexes.has_index(2, seg, "vec", 21)
        assert not store.indexes.has_index(1, seg, "vec", 11)
    assert not [f for f in store.indexes.files(2) if f.field == "name"]
    assert _failures("broken") == before + 2 and _failures("healthy") == 0

    # the failure is published: a durable file read by DescribeIndex, and one announcement per segment
    record = store.indexes.read_failure(1, 1, "vec", 11)
    assert record["attempts"] == 1 and "m=3 must divide dim=8" in record["reason"]
    progress = index_progress(store, broken, "vec")
    assert progress[:3] == (0, 80, 80)
    assert progress.fail_reason.startswith(
        "2 of 2 sealed segments failed to build index vec_idx on field vec"
    )
    assert "m=3 must divide dim=8" in progress.fail_reason
    assert index_progress(store, healthy, "vec") == (80, 80, 0, "")
    failed = [a for a in kafka.sent if isinstance(a, IndexFailed)]
    assert sorted(a.segment_id for a in failed) == [1, 2] and all(a.attempts == 1 for a in failed)

    # backing off: nothing is retried before the delay, then retried, and the same error is not re-announced
    assert worker.reconcile() == 0 and _failures("broken") == before + 2
    clock.now += 5
    assert worker.reconcile() == 0 and _failures("broken") == before + 4
    assert store.indexes.read_failure(1, 1, "vec", 11)["attempts"] == 2
    assert len([a for a in kafka.sent if isinstance(a, IndexFailed)]) == 2
    clock.now += 9  # the second delay is 10 s
    assert worker.reconcile() == 0 and _failures("broken") == before + 4


def test_a_fixed_index_builds_and_clears_its_failure(setup) -> None:
    worker, store, broken, _, clock, _ = setup
    worker.reconcile()
    assert store.indexes.has_failure(1, 2, "vec", 11)
    worker.catalog.infos["broken"] = fixed = _info(
        "broken", 1, IndexInfo("vec", "vec_idx", "IVF_PQ", "L2", {"m": 4, "nlist": 4}, index_id=11)
    )
    clock.now += 5
    assert worker.reconcile() == 2
    assert not [f for f in store.indexes.files(1) if f.kind == FAILURE]
    assert len(worker.failures) == 0
    assert index_progress(store, fixed, "vec") == (80, 80, 0, "")


def test_a_collection_whose_segments_cannot_be_listed_fails_alone(setup, tmp_path: Path) -> None:
    worker, store, _, _, _, _ = setup
    for f in (tmp_path / "tables" / "1" / ROWS).rglob("*.parquet"):
        f.write_bytes(b"not parquet")
    assert worker.reconcile() == 2
    failure = worker.failures.get((1, "segments"))
    assert failure is not None and failure.attempts == 1 and failure.reason


def test_scalar_indexes_are_catalog_entries_not_faiss_builds(setup) -> None:
    """The production ``ArrowInvalid: Failed casting from string to fixed_size_binary[0]``: the
    indexer took an INVERTED index on a VARCHAR field for a vector index and cast its strings to
    ``binary(2 * dim)`` with dim 0. Now scalar fields are skipped, and reading one as vectors says so."""
    worker, store, _, healthy, _, kafka = setup
    scalar_only = healthy.evolve("create_index", indexes={"name": healthy.indexes["name"]})
    worker.catalog.infos = {"healthy": scalar_only}
    assert worker.reconcile() == 0
    assert len(worker.failures) == 0 and kafka.sent == []
    assert not store.indexes.exists(2)
    with pytest.raises(ValueError, match="VARCHAR column is not a vector column"):
        arrow_vectors(pa.array(["n0", "n1"]), "VARCHAR", 0)
