"""Index attaches off the tail threads, retried with backoff: the attacher's queue driven by hand
under a fake clock (no real sleeps), and real loaded collections over real Delta tables and FAISS
files whose index store fails for a while."""

from __future__ import annotations

import gc
import logging
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
from walvus.index_store import IndexStore, index_name

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
def flaky(indexes: IndexStore, failures: int, method: str = "local_index") -> Callable[[], int]:
    """Make the index store's downloads (or, with ``method="built_and_failed"``, its listings) fail
    ``failures`` times; returns how many were tried."""
    real = getattr(indexes, method)
    tried = [0]

    def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        tried[0] += 1
        if tried[0] <= failures:
            raise StorageError(f"cannot reach s3://bucket for {method}{args}: connection refused")
        return real(*args, **kwargs)

    setattr(indexes, method, call)
    return lambda: tried[0]


def on_threads(indexes: IndexStore) -> list[str]:
    """The names of the threads that list the index folder or download an index file, as they do."""
    names: list[str] = []
    for method in ("built_and_failed", "local_index"):
        real = getattr(indexes, method)

        def call(*args, _real=real, **kwargs):  # noqa: ANN002, ANN003, ANN202
            names.append(threading.current_thread().name)
            return _real(*args, **kwargs)

        setattr(indexes, method, call)
    return names


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
    """The tail thread's periodic check for a seal's missed announcement lists and downloads
    nothing itself: it queues a listing of the index folder for the attacher."""
    from searcher import collection as collection_module
    from searcher.handoff import PreparedSeal

    monkeypatch.setattr(collection_module, "INDEX_RECHECK_SECONDS", 0.0)
    clock = FakeClock()
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    assert indexed(coll)
    sealed = [c for c in coll.containers if c.sealed]
    for c in sealed:
        c.indexes.clear()
    threads = on_threads(env.store.indexes)

    assert not coll._ready(PreparedSeal(0, 0, sealed))  # on the "tail thread": this one

    assert threads == [] and not indexed(coll)
    assert attacher.pending() == {(CID,): 0}
    attacher.run_due()  # the listing, then the attach it queued
    assert indexed(coll) and attacher.pending() == {}


def test_a_seal_stops_waiting_for_a_failed_build_without_io_on_the_tail_thread(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seal whose index build failed (its failure file) is swapped in without waiting; the tail
    thread learns it from the last listing of the index folder, made on the attacher's thread."""
    from searcher import collection as collection_module
    from searcher.handoff import PreparedSeal

    monkeypatch.setattr(collection_module, "INDEX_RECHECK_SECONDS", 0.0)
    clock = FakeClock()
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    sealed = [c for c in coll.containers if c.sealed]
    for c in sealed:
        c.indexes.clear()
    (seg,) = {c.segment_id for c in sealed}
    env.store.indexes.remove(CID, index_name(seg, "vec", 5))
    env.store.indexes.write_failure(CID, seg, "vec", 5, {"reason": "boom", "attempts": 3})
    seal = PreparedSeal(0, 0, sealed)
    lookups = []
    monkeypatch.setattr(env.store.indexes, "has_failure", lambda *a: lookups.append(a) or True)
    threads = on_threads(env.store.indexes)

    assert not coll._ready(seal)  # the failure is not known yet: a listing is queued
    assert threads == [] and lookups == []
    attacher.run_due()  # the listing finds the failure file
    assert coll.failed_builds == {(seg, "vec", 5)}
    assert coll._ready(seal)  # no longer waits for that index
    assert lookups == [] and threads == ["MainThread"]  # only the attacher's run listed


def test_an_index_file_is_attached_once_when_two_threads_want_it(env: Env) -> None:
    """A seal read and the attacher (an announcement) may want the same file at once: the second
    finds it on its way and leaves it; it is downloaded and attached once."""
    coll = LoadedCollection(env.info, env.store)
    coll.load()
    sealed = [c for c in coll.containers if c.sealed]
    for c in sealed:
        c.indexes.clear()
    (seg,) = {c.segment_id for c in sealed}
    real = env.store.indexes.local_index
    entered, go, downloads = threading.Event(), threading.Event(), []

    def slow(*args):  # noqa: ANN002, ANN202
        downloads.append(args)
        entered.set()
        go.wait(10)
        return real(*args)

    env.store.indexes.local_index = slow  # type: ignore[method-assign]
    first: list[Attach] = []
    t = threading.Thread(target=lambda: first.append(coll.attach_index(seg, "vec", 5)))
    t.start()
    assert entered.wait(10)

    assert coll.attach_index(seg, "vec", 5) is Attach.UNWANTED  # on its way already
    go.set()
    t.join(10)
    assert first == [Attach.ATTACHED] and len(downloads) == 1 and indexed(coll)
    assert coll.attach_index(seg, "vec", 5) is Attach.UNWANTED  # attached: nothing lacks it


# the index folder's listing ----------------------------------------------------------------------
def test_a_failing_listing_does_not_fail_the_load(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The object store cannot list the index folder while the collection loads: the load
    completes (progress 100), the segment is searched exactly, and the listing is retried with
    backoff on the attacher's thread until it works; the index found then attaches."""
    caplog.set_level(logging.INFO, logger="searcher.index_attach")
    clock = FakeClock()
    listed = flaky(env.store.indexes, failures=2, method="built_and_failed")
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    before = failures_counted("StorageError")

    coll.load()

    assert coll.progress == 100 and not indexed(coll)
    assert sum(c.count(a) for c, a in coll.snapshot()) == 20
    assert listed() == 1 and attacher.pending() == {(CID,): 1}
    assert failures_counted("StorageError") - before == 1
    warning = [r for r in caplog.records if "index folder listing failed" in r.getMessage()]
    assert warning and warning[0].levelname == "WARNING"
    assert "collection=c " in warning[0].getMessage() and "connection refused" in warning[0].getMessage()

    waits = attempts_until_done(attacher, clock)  # listed twice more: failed, then worked

    assert waits == pytest.approx([0.5, 1.0])
    assert listed() == 3 and indexed(coll)
    assert failures_counted("StorageError") - before == 2
    assert f"index folder listing retries ended collection_id={CID} failures=2 outcome=listed" in caplog.text


def test_a_listing_retry_keeps_its_backoff_when_asked_again(env: Env) -> None:
    """A waiting seal asks for a listing every few seconds: one queued already keeps its place."""
    clock = FakeClock()
    listed = flaky(env.store.indexes, failures=100, method="built_and_failed")
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    attacher.submit_listing(coll)
    assert attacher.run_due() == 0.5
    assert listed() == 1


def test_a_listing_retry_ends_when_the_collection_is_released(env: Env) -> None:
    from searcher.registry import Registry
    from walvus.settings import SearcherSettings

    clock = FakeClock()
    listed = flaky(env.store.indexes, failures=100, method="built_and_failed")
    attacher = IndexAttacher(clock, rnd=lambda: 0.0)
    catalog = SimpleNamespace(by_id=lambda cid: env.info)
    registry = Registry(catalog, env.store, "ns", SearcherSettings(), clock=clock, attacher=attacher)
    registry.tail = SimpleNamespace(assign=lambda t, s: None, unassign=lambda t: None)
    registry._load(env.info)
    assert registry.held()[CID][1] == 100  # the progress this searcher reports: loaded
    assert attacher.pending() == {(CID,): 1}

    registry.drop(CID)

    assert attempts_until_done(attacher, clock) == pytest.approx([0.5])
    assert listed() == 1


def test_without_an_attacher_a_failing_listing_is_logged(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    flaky(env.store.indexes, failures=1, method="built_and_failed")
    coll = LoadedCollection(env.info, env.store)  # a tool's copy: nothing retries
    coll.load()
    assert coll.progress == 100 and not indexed(coll)
    assert "index folder listing failed collection=c " in caplog.text


# index changes from the catalog ------------------------------------------------------------------
@pytest.mark.parametrize("change", ["created", "replaced"])
def test_an_index_change_from_the_catalog_downloads_on_the_attachers_thread(env: Env, change: str) -> None:
    """``create_index`` on a loaded collection, or an index replaced: the catalog listener (this
    thread) returns at once, the listing and the download happen on the attacher's thread."""
    before = {} if change == "created" else {"vec": IndexInfo("vec", "vec", "FLAT", "L2", index_id=4)}
    attacher = IndexAttacher(FakeClock(), rnd=lambda: 0.0)
    coll = LoadedCollection(
        CollectionInfo("c", CID, SCHEMA, shards_num=1, indexes=before), env.store, attacher=attacher
    )
    coll.load()
    assert not indexed(coll)
    threads = on_threads(env.store.indexes)
    attacher.start()
    try:
        coll.update_info(env.info)  # index 5 on "vec", its file built already
        eventually(lambda: indexed(coll), "the index attached")
    finally:
        attacher.stop()
    assert threads and set(threads) == {"index-attach"}  # listed and downloaded there, nowhere else


def test_a_catalog_update_without_an_index_change_lists_nothing(env: Env) -> None:
    attacher = IndexAttacher(FakeClock(), rnd=lambda: 0.0)
    coll = LoadedCollection(env.info, env.store, attacher=attacher)
    coll.load()
    coll.update_info(env.info.evolve("alter", properties={"collection.ttl.seconds": "0"}))
    assert attacher.pending() == {}
