"""A searcher's collection swapping compacted segments in, on real Delta tables in tmp_path and
real FAISS indexes, without Kafka: WAL records are applied as the tail would, seals and
compactions are announced by calling the collection's hooks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from indexer.compaction import CompactionPolicy, compact
from indexer.worker import IndexWorker
from schemas.catalog import CollectionInfo, IndexInfo
from schemas.segments import SegmentsCompacted, is_compacted
from schemas.wal import Op
from searcher import collection as collection_module
from searcher.collection import LoadedCollection
from tests.memory import MemoryLog
from tests.unit.test_compaction import CID, NOW_MS, SCHEMA, Env

FLAT = {"vec": IndexInfo("vec", "vec", "FLAT", "L2", index_id=5)}


class Searcher:
    """One loaded collection fed by hand: records applied, seals and compactions announced."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.coll = LoadedCollection(env.info, env.store, handoff_wait=600)
        self.coll.load()
        catalog = type("Catalog", (), {"add_listener": lambda self, fn: None})()
        self.worker = IndexWorker(MemoryLog(), catalog, env.store, "ns")

    def seal(self, shard: int, *records: tuple[Op, list[int], str | None]) -> int:
        """The streams worker seals; the tail applies the records; returns the rows version."""
        for r in self.env.seal(shard, *records):
            self.coll.apply(shard, r.offset, r.record)
        dt = self.env.store.open(CID, "rows")
        return dt.version

    def build_indexes(self) -> None:
        from walvus.index_progress import sealed_segments

        for seg in sealed_segments(self.env.store, CID):
            if not self.env.store.indexes.has_index(CID, seg, "vec", 5):
                self.worker.build(self.env.info, seg, "vec")
            self.coll.attach_index(seg, "vec", 5)

    def settle(self, until, timeout: float = 20.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, [
                (c.segment_id, c.num_rows, c.sealed) for c in self.coll.containers
            ]
            self.coll.maybe_swap()
            time.sleep(0.02)

    def live(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for c, mask in self.coll.snapshot():
            for i, n in zip(
                c.pks.filter(mask).to_pylist(), c.table.column("name").filter(mask).to_pylist(), strict=True
            ):
                assert i not in out, f"key {i} live twice"
                out[i] = n
        return out


@pytest.fixture
def searcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Searcher:
    monkeypatch.setattr(collection_module, "INDEX_RECHECK_SECONDS", 0.0)
    env = Env(tmp_path / "tables", shards=1)
    env.info = CollectionInfo("c", CID, SCHEMA, shards_num=1, indexes=FLAT)
    return Searcher(env)


def _announce(result, env: Env, cid: int = 1) -> SegmentsCompacted:  # noqa: ANN001
    return SegmentsCompacted(
        CID, "c", cid, result.removed, result.added, result.upto, result.table_version, result.plans
    )


def test_compacted_segments_replace_the_old_ones_with_the_same_live_rows(searcher: Searcher) -> None:
    s, coll = searcher, searcher.coll
    s.seal(0, (Op.INSERT, [0, 1, 2, 3], None), (Op.FLUSH, [], None))
    version = s.seal(0, (Op.UPSERT, [1], None), (Op.DELETE, [2], None), (Op.FLUSH, [], None))
    coll.note_sealed(0, 4, version)
    s.build_indexes()
    s.settle(lambda: all(c.sealed for c in coll.containers) and len(coll.containers) == 2)
    before = s.live()
    assert sorted(before) == [0, 1, 3]

    result = compact(
        s.env.store, s.env.info, 1, CompactionPolicy(retention_seconds=0), force=True, now_ms=NOW_MS
    )
    coll.note_compacted(_announce(result, s.env))
    s.settle(lambda: len(coll.compactions.pending) == 1)
    time.sleep(0.1)
    coll.maybe_swap()
    assert any(not is_compacted(c.segment_id) for c in coll.containers)  # waits for the new index
    s.build_indexes()
    s.settle(lambda: all(is_compacted(c.segment_id) for c in coll.containers))
    assert s.live() == before
    assert sum(c.num_rows for c in coll.containers) == 3 and all("vec" in c.indexes for c in coll.containers)
    # later writes kill the compacted rows as they killed the old ones
    s.seal(0, (Op.DELETE, [0], None))
    assert sorted(s.live()) == [1, 3]


def test_a_compaction_committed_before_the_seal_was_handed_over(searcher: Searcher) -> None:
    """The seal's own segments are gone before any index of them was built: the hand-over must not
    wait for those indexes, and the compaction swaps right after it."""
    s, coll = searcher, searcher.coll
    v1 = s.seal(0, (Op.INSERT, [0, 1, 2], None), (Op.FLUSH, [], None))
    v2 = s.seal(0, (Op.UPSERT, [0], None), (Op.FLUSH, [], None))
    keep = CompactionPolicy(retention_seconds=3600)  # the seal reads its own version's files
    result = compact(s.env.store, s.env.info, 1, keep, force=True, now_ms=NOW_MS)
    assert v2 > v1 and len(result.removed) == 2
    coll.note_sealed(0, 1, v1)
    coll.note_sealed(0, 3, v2)
    coll.note_compacted(_announce(result, s.env))
    before = s.live()
    s.build_indexes()  # only the compacted segment exists to be indexed
    s.settle(lambda: coll.containers and all(is_compacted(c.segment_id) for c in coll.containers))
    assert s.live() == before and sorted(before) == [0, 1, 2]
    assert all(c.sealed and "vec" in c.indexes for c in coll.containers), [
        (c.segment_id, c.num_rows, list(c.indexes)) for c in coll.containers
    ]


def test_a_swap_whose_rows_the_searcher_does_not_hold_is_refused(searcher: Searcher) -> None:
    s, coll = searcher, searcher.coll
    version = s.seal(0, (Op.INSERT, [0, 1], None), (Op.FLUSH, [], None))
    coll.note_sealed(0, 1, version)
    s.build_indexes()
    s.settle(lambda: all(c.sealed for c in coll.containers) and coll.containers)
    s.seal(0, (Op.INSERT, [5], None), (Op.FLUSH, [], None))
    result = compact(
        s.env.store, s.env.info, 1, CompactionPolicy(retention_seconds=0), force=True, now_ms=NOW_MS
    )
    bogus = SegmentsCompacted(CID, "c", 1, result.removed[:1], result.added, {"0": 1}, result.table_version)
    coll.note_compacted(bogus)  # names only the first segment: the new one holds a row of the second
    s.build_indexes()
    s.settle(
        lambda: not coll.compactions.pending and coll.compactions.removed == set() or False, timeout=5
    ) if False else None
    s.settle(lambda: len(coll.compactions.pending) == 1)
    coll.maybe_swap()
    s.settle(lambda: not coll.compactions.pending)
    assert not any(is_compacted(c.segment_id) for c in coll.containers)  # refused: the old ones stay
    assert sorted(s.live()) == [0, 1, 5]
    assert np.all([c.sealed or c.num_rows for c in coll.containers])


def test_swaps_wait_while_an_iterator_reads_a_pinned_snapshot(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from searcher import compacted

    s, coll = searcher, searcher.coll
    version = s.seal(0, (Op.INSERT, [0, 1], None), (Op.FLUSH, [], None))
    coll.note_sealed(0, 1, version)
    s.build_indexes()
    s.settle(lambda: coll.containers and all(c.sealed for c in coll.containers))
    pin = max(int(c.ts.max()) for c in coll.containers)  # an iterator's first page saw rows 0 and 1
    s.seal(0, (Op.UPSERT, [0], None), (Op.FLUSH, [], None))
    coll.note_sealed(0, 3, -1)
    s.build_indexes()
    s.settle(lambda: all(c.sealed for c in coll.containers) and len(coll.containers) == 2)
    result = compact(
        s.env.store, s.env.info, 1, CompactionPolicy(retention_seconds=0), force=True, now_ms=NOW_MS
    )
    coll.note_compacted(_announce(result, s.env))
    s.build_indexes()
    s.settle(lambda: len(coll.compactions.pending) == 1)
    pinned = {int(k) for c, m in coll.snapshot(at_ts=pin) for k in c.pks.filter(m).to_pylist()}
    assert pinned == {0, 1}
    for _ in range(5):
        coll.maybe_swap()
    assert len(coll.compactions.pending) == 1  # the iterator still needs the old version of key 0
    monkeypatch.setattr(compacted, "PIN_GRACE_SECONDS", 0.0)
    s.settle(lambda: not coll.compactions.pending)
    assert all(is_compacted(c.segment_id) for c in coll.containers)
