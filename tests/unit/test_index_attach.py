"""Index attaches off the tail threads, retried with backoff: the attacher's queue driven by hand
under a fake clock (no real sleeps), and real loaded collections over real Delta tables and FAISS
files whose index store fails for a while."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from indexer.worker import IndexWorker
from schemas.catalog import CollectionInfo, IndexInfo
from schemas.segments import IndexBuilt
from schemas.wal import Op
from searcher.collection import LoadedCollection
from searcher.index_attach import Attach, Backoff, IndexAttacher
from searcher.service import SearcherService
from tests.clock import FakeClock
from tests.memory import MemoryLog
from tests.unit.test_compaction import CID, SCHEMA, Env
from walvus.exceptions import StorageError
from walvus.index_store import IndexStore

FLAT = {"vec": IndexInfo("vec", "vec", "FLAT", "L2", index_id=5)}


def failures_counted(error: str) -> float:
    return REGISTRY.get_sample_value("walvus_searcher_index_attach_failures_total", {"error": error}) or 0.0


class FakeCollection:
    """Answers ``attach_index`` from a script: each call pops the next outcome or exception."""

    def __init__(self, cid: int = 1, script: dict | None = None) -> None:
        self.info = SimpleNamespace(collection_id=cid, name=f"c{cid}")
        self.released = False
        self.script: dict[tuple[int, str, int], list] = script or {}
        self.calls: list[tuple[int, str, int]] = []

    def attach_index(self, segment_id: int, field: str, index_id: int) -> Attach:
        key = (segment_id, field, index_id)
        self.calls.append(key)
        steps = self.script.get(key, [])
        step = steps.pop(0) if len(steps) > 1 else (steps[0] if steps else Attach.ATTACHED)
        if isinstance(step, BaseException):
            raise step
        return step


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded in rounds, not timed) for another thread to get somewhere."""
    for _ in range(3000):
        if check():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never happened: {what}")


def attempts_until_done(attacher: IndexAttacher, clock: FakeClock, limit: int = 50) -> list[float]:
    """Run the queue to empty, moving the clock to each due time; the waits it took."""
    waits = []
    for _ in range(limit):
        wait = attacher.run_due()
        if wait is None:
            return waits
        waits.append(wait)
        clock.advance(wait)
    raise AssertionError(f"still pending after {limit} rounds: {attacher.pending()}")


# backoff -----------------------------------------------------------------------------------------
def test_backoff_doubles_to_its_cap_and_jitter_only_shortens() -> None:
    b = Backoff(first=0.5, cap=60.0, jitter=0.2)
    assert [b.delay(n, 0.0) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert b.delay(1, 0.999) == pytest.approx(0.5 * (1 - 0.2 * 0.999))
    assert b.delay(1000, 0.0) == 60.0
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(first=5, cap=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=0.7)


# the queue under a fake clock --------------------------------------------------------------------
def test_a_failing_attach_is_retried_with_growing_delays_until_it_works() -> None:
    clock = FakeClock()
    fails = [StorageError("cannot read") for _ in range(4)]
    coll = FakeCollection(script={(7, "vec", 5): [*fails, Attach.ATTACHED]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.5)
    before = failures_counted("StorageError")
    attacher.submit(coll, 7, "vec", 5)

    waits = attempts_until_done(attacher, clock)

    assert coll.calls == [(7, "vec", 5)] * 5  # the first try and four retries
    assert waits == sorted(waits) and len(set(waits)) == 4  # each wait longer than the last
    assert waits == pytest.approx([Backoff().delay(n, 0.5) for n in range(1, 5)])
    assert failures_counted("StorageError") - before == 4
    assert attacher.pending() == {}


def test_nothing_is_attempted_before_its_time() -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [OSError("disk full"), Attach.ATTACHED]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    assert attacher.run_due() == 0.5  # failed once: the next try in half a second
    clock.advance(0.4)
    assert attacher.run_due() == pytest.approx(0.1)
    assert len(coll.calls) == 1
    clock.advance(0.1)
    assert attacher.run_due() is None
    assert len(coll.calls) == 2


def test_a_missing_file_is_retried_too() -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [Attach.MISSING, Attach.MISSING, Attach.ATTACHED]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    assert attempts_until_done(attacher, clock) == pytest.approx([0.5, 1.0])
    assert len(coll.calls) == 3


@pytest.mark.parametrize("outcome", [Attach.UNWANTED, Attach.ATTACHED])
def test_a_retry_ends_when_the_attach_no_longer_applies(outcome: Attach) -> None:
    """UNWANTED: the index was dropped or replaced, or the segment compacted away."""
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [StorageError("down"), outcome, StorageError("never")]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    attempts_until_done(attacher, clock)
    assert len(coll.calls) == 2


def test_a_retry_ends_when_the_collection_is_released() -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [StorageError("down")]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    assert attacher.run_due() == 0.5
    coll.released = True
    assert attempts_until_done(attacher, clock) == pytest.approx([0.5])
    assert len(coll.calls) == 1  # never tried again


def test_a_retry_ends_when_the_released_copy_is_freed() -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [StorageError("down")]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    attacher.run_due()
    del coll  # the queue holds no reference that would keep a released copy in memory
    gc.collect()  # (the script's exception holds a frame that holds it)
    assert attempts_until_done(attacher, clock) == pytest.approx([0.5])


def test_one_failing_attach_does_not_hold_back_another() -> None:
    clock = FakeClock()
    bad = StorageError("down")
    coll = FakeCollection(script={(1, "vec", 5): [bad]})  # fails every time
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 1, "vec", 5)
    attacher.submit(coll, 2, "vec", 5)
    assert attacher.run_due() == 0.5  # the good one went through in the same round
    assert coll.calls == [(1, "vec", 5), (2, "vec", 5)]
    for _ in range(6):  # the bad one backs off to seconds...
        clock.advance(attacher.run_due() or 0.0)
    attacher.submit(coll, 3, "vec", 5)  # ...while a new one goes at once
    attacher.run_due()
    assert coll.calls[-1] == (3, "vec", 5)
    assert list(attacher.pending()) == [(1, 1, "vec", 5)]


def test_an_attach_queued_already_keeps_its_backoff() -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [StorageError("down")]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.submit(coll, 7, "vec", 5)
    attacher.run_due()
    attacher.submit(coll, 7, "vec", 5)  # announced again (or re-checked by a waiting seal)
    assert attacher.run_due() == 0.5
    assert len(coll.calls) == 1


def test_a_bug_is_logged_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    coll = FakeCollection(script={(7, "vec", 5): [KeyError("bug")]})
    attacher = IndexAttacher(clock)
    attacher.submit(coll, 7, "vec", 5)
    assert attacher.run_due() is None
    assert "not retried" in caplog.text


# the worker thread -------------------------------------------------------------------------------
class BlockingCollection(FakeCollection):
    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def attach_index(self, segment_id: int, field: str, index_id: int) -> Attach:
        self.entered.set()
        assert self.release.wait(30), "the test never let the download finish"
        return super().attach_index(segment_id, field, index_id)


def test_the_segments_tail_only_queues_an_announced_index() -> None:
    """A slow download runs on the attacher's thread: the announcement handler returns while it runs."""
    coll = BlockingCollection()
    attacher = IndexAttacher(FakeClock())
    attacher.start()
    try:
        svc = SimpleNamespace(registry=SimpleNamespace(get=lambda cid: coll), index_attacher=attacher)
        ann = IndexBuilt(1, "c1", 7, "vec", "vec", 5, "s3://b/7_vec_5.faiss", 10)
        SearcherService._on_index(svc, ann)  # type: ignore[arg-type]  # returns: nothing downloaded here
        assert coll.entered.wait(30)  # the worker is in the download
        assert threading.current_thread().name != "index-attach"
        SearcherService._on_index(svc, IndexBuilt(1, "c1", 8, "vec", "vec", 5, "s3://b/8_vec_5.faiss", 10))
        assert len(attacher.pending()) == 2  # both queued, the first one still downloading
        coll.release.set()
        eventually(lambda: not attacher.pending(), "both attached")
    finally:
        attacher.stop()
    assert coll.calls == [(7, "vec", 5), (8, "vec", 5)]


def test_the_worker_retries_when_the_clock_moves_and_stops_cleanly() -> None:
    clock = FakeClock()
    done = threading.Event()

    class Coll(FakeCollection):
        def attach_index(self, segment_id: int, field: str, index_id: int) -> Attach:
            try:
                return super().attach_index(segment_id, field, index_id)
            finally:
                done.set()

    coll = Coll(script={(7, "vec", 5): [StorageError("down"), Attach.ATTACHED]})
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    attacher.start()
    try:
        attacher.submit(coll, 7, "vec", 5)
        assert done.wait(30)
        eventually(lambda: attacher.pending().get((1, 7, "vec", 5)) == 1, "the failure recorded")
        done.clear()
        clock.advance(0.5)
        attacher.wake()
        assert done.wait(30)
    finally:
        attacher.stop()
    assert coll.calls == [(7, "vec", 5)] * 2
    assert not [t for t in threading.enumerate() if t.name == "index-attach"]


# real collections, real index files --------------------------------------------------------------
def flaky(indexes: IndexStore, failures: int) -> Callable[[], int]:
    """Make the index store's downloads fail ``failures`` times; returns how many were tried."""
    real = indexes.local_index
    tried = [0]

    def local_index(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        tried[0] += 1
        if tried[0] <= failures:
            raise StorageError(f"cannot read {args} at s3://bucket: connection refused")
        return real(*args, **kwargs)

    indexes.local_index = local_index  # type: ignore[method-assign]
    return lambda: tried[0]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path / "tables", shards=1)
    env.info = CollectionInfo("c", CID, SCHEMA, shards_num=1, indexes=FLAT)
    env.seal(0, (Op.INSERT, list(range(20)), None))
    catalog = SimpleNamespace(add_listener=lambda fn: None)
    worker = IndexWorker(MemoryLog(), catalog, env.store, "ns")
    from walvus.index_progress import sealed_segments

    for seg in sealed_segments(env.store, CID):
        worker.build(env.info, seg, "vec")
    return env


def indexed(coll: LoadedCollection) -> bool:
    return all("vec" in c.indexes for c in coll.containers if c.sealed)


def test_a_failing_index_file_does_not_fail_the_load(env: Env) -> None:
    clock = FakeClock()
    tried = flaky(env.store.indexes, failures=2)
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)

    coll.load()  # the index download fails: the load goes on, the segment is searched exactly

    assert coll.progress == 100 and not indexed(coll)
    assert sum(c.count(a) for c, a in coll.snapshot()) == 20
    assert tried() == 1 and len(attacher.pending()) == 1
    waits = attempts_until_done(attacher, clock)  # failed once more, then attached
    assert waits == pytest.approx([0.5, 1.0])
    assert tried() == 3 and indexed(coll)


def test_a_retry_ends_when_the_index_is_replaced(env: Env) -> None:
    clock = FakeClock()
    tried = flaky(env.store.indexes, failures=1)
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    replaced = {"vec": IndexInfo("vec", "vec", "FLAT", "L2", index_id=6)}
    coll.update_info(CollectionInfo("c", CID, SCHEMA, shards_num=1, indexes=replaced))

    assert attempts_until_done(attacher, clock) == pytest.approx([0.5])
    assert tried() == 1 and not indexed(coll)  # index 5 was never read again


def test_a_retry_ends_when_the_collection_is_released_by_the_registry(env: Env) -> None:
    from searcher.registry import Registry
    from walvus.settings import SearcherSettings

    clock = FakeClock()
    tried = flaky(env.store.indexes, failures=100)
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    catalog = SimpleNamespace(by_id=lambda cid: env.info)
    registry = Registry(catalog, env.store, "ns", SearcherSettings(), clock=clock, attacher=attacher)
    registry.tail = SimpleNamespace(assign=lambda t, s: None, unassign=lambda t: None)
    registry._load(env.info)
    assert len(attacher.pending()) == 1

    registry.drop(CID)

    assert attempts_until_done(attacher, clock) == pytest.approx([0.5])
    assert tried() == 1


def test_a_waiting_seal_queues_its_index_for_the_attacher(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tail thread's periodic check for a seal's missed announcement downloads nothing itself."""
    from searcher import collection as collection_module

    monkeypatch.setattr(collection_module, "INDEX_RECHECK_SECONDS", 0.0)
    clock = FakeClock()
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    assert indexed(coll)
    for c in coll.containers:
        c.indexes.clear()
    coll._load_indexes([c for c in coll.containers if c.sealed], queue=True)
    assert not indexed(coll) and len(attacher.pending()) == 1
    attacher.run_due()
    assert indexed(coll)
