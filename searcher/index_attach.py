"""Attaching announced index files to sealed segments, off the tail threads, retried with backoff.

The segments-topic tail only queues an announced index (``submit``) and goes on to the next
announcement: the download and the FAISS read happen on this module's worker thread. A download
that fails (the object store unreachable, a file not there yet, a file FAISS cannot read) is
retried after a backoff that doubles up to a cap, with jitter; meanwhile the segment is searched
exactly (correct, slower). Each (collection, segment, field, index) waits on its own: one that
keeps failing never holds back the others. A retry stops once it no longer applies: the copy of
the collection released or replaced, the index dropped or replaced by a new index id, or the
segment no longer held (compacted away); ``LoadedCollection.attach_index`` tells that case apart.

Besides single attaches, the queue holds listings of a collection's index folder
(``submit_listing``): the folder is listed on the worker thread and an attach is queued for each
built index a sealed segment lacks. A changed index from the catalog (``create_index`` on a loaded
collection, an index replaced) and a waiting seal's periodic check take that path, so neither the
catalog listener nor the WAL tail ever lists or downloads. A listing that fails is retried with
the same backoff, counted in the same metric, until it works or the copy is released.

One worker per searcher service, not one per collection: downloads then go one at a time, so the
temporary files and the bandwidth they take stay bounded however many collections are loaded,
and indexes come at the pace the indexer builds them anyway. Loads, seal reads and compactions
still list and attach their indexes on their own threads, and queue here only what failed: a
load's progress waits for the downloads that work, never for the ones that fail. A load whose
listing fails (the object store down) therefore completes, and reports 100%, with its segments
searched exactly over their stored vectors: its answers are complete and correct, only slower,
and holding the load at less than 100% until the store comes back would hang ``load_collection``
for as long as the outage lasts. The indexes attach when the queued listing works, without a reload.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer import VectorIndex
from schemas.index_spec import IndexSpec
from searcher.metrics import INDEX_ATTACH_FAILURES
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.exceptions import StorageError

log = logging.getLogger(__name__)
# what a failed attach raises: the index store (StorageError), the local disk (OSError), FAISS
# reading a file it cannot parse (RuntimeError)
RETRYABLE = (StorageError, OSError, RuntimeError)
LISTING_ERRORS = (StorageError, OSError)  # what a failed listing of an index folder raises
STOP_WAIT_SECONDS = 10.0


class Attach(enum.Enum):
    """What ``LoadedCollection.attach_index`` did."""

    ATTACHED = "attached"
    UNWANTED = "unwanted"  # nothing held wants it: index dropped or replaced, segment gone, attached already
    MISSING = "missing"  # the index store has no such file (not yet, or no more)


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``first`` seconds doubling up to ``cap``, each shortened by up to
    ``jitter`` of itself at random (so searchers that failed together do not retry together)."""

    first: float = 0.5
    cap: float = 60.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap):
            raise ValueError(f"backoff needs 0 < first <= cap, got first={self.first} cap={self.cap}")
        if not (0 <= self.jitter < 0.5):
            raise ValueError(f"backoff jitter must be in [0, 0.5), got {self.jitter}")

    def delay(self, failures: int, rnd: float) -> float:
        """Seconds to wait after the ``failures``-th failure in a row; ``rnd`` is uniform in [0, 1)."""
        base = min(self.cap, self.first * 2.0 ** min(failures - 1, 64))
        return base * (1.0 - self.jitter * rnd)


AttachKey = tuple[int, int, str, int]  # collection id, segment id, field, index id
ListingKey = tuple[int]  # collection id: a listing of its index folder
Key = AttachKey | ListingKey


def _is_listing(key: Key) -> bool:
    return len(key) == 1


@dataclass
class _Pending:
    coll: weakref.ref  # the copy of the collection it is for (a released copy is let go)
    failures: int = 0
    due: float = 0.0


class IndexAttacher:
    """A worker thread attaching queued indexes, each retried with ``backoff`` while it fails."""

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        backoff: Backoff | None = None,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        """``clock``: its monotonic time schedules retries (tests pass a fake one and call
        ``run_due`` or ``wake``); ``rnd``: the jitter's random numbers."""
        self._clock = clock
        self.backoff = backoff or Backoff()
        self._rnd = rnd
        self._pending: dict[Key, _Pending] = {}
        self._heap: list[tuple[float, int, Key]] = []  # (due, tie-break, key); stale entries skipped
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # the worker ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-attach", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker: an attach in progress finishes, nothing more is attempted."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_SECONDS)
            if self._thread.is_alive():
                log.warning("index attach worker still busy at shutdown waited=%.0fs", STOP_WAIT_SECONDS)
            self._thread = None

    def wake(self) -> None:
        """Look at the queue again now (a fake clock moved)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.run_due()
            except Exception:  # a bug: keep the worker alive for the other items
                log.exception("index attach worker step failed")
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    # the queue ----------------------------------------------------------------------------------
    def submit(self, coll: Any, segment_id: int, field: str, index_id: int) -> None:
        """Attach this index to ``coll`` (a ``LoadedCollection``) soon; returns at once."""
        self._queue((coll.info.collection_id, segment_id, field, index_id), coll)

    def submit_listing(self, coll: Any) -> None:
        """List ``coll``'s index folder soon and queue an attach of each built index it lacks
        (``LoadedCollection.attach_listed``); returns at once."""
        self._queue((coll.info.collection_id,), coll)

    def listing_failed(self, coll: Any, exc: BaseException) -> None:
        """Listing ``coll``'s index folder failed on another thread (a load): retry it here."""
        self._failed((coll.info.collection_id,), _Pending(weakref.ref(coll)), exc)

    def _queue(self, key: Key, coll: Any) -> None:
        with self._lock:
            item = self._pending.get(key)
            if item is not None and item.coll() is coll:
                return  # queued already: it keeps its place (and its backoff while it fails)
            self._schedule(key, _Pending(weakref.ref(coll)), self._clock.monotonic())
        self._wake.set()

    def attach(self, coll: Any, segment_id: int, field: str, index_id: int) -> Attach | None:
        """Attach now, on the caller's thread; on a failure, log it and queue a retry (None)."""
        try:
            return coll.attach_index(segment_id, field, index_id)
        except RETRYABLE as exc:
            self._failed(
                (coll.info.collection_id, segment_id, field, index_id), _Pending(weakref.ref(coll)), exc
            )
            return None

    def pending(self) -> dict[Key, int]:
        """The queued attaches and how many times each failed in a row."""
        with self._lock:
            return {k: p.failures for k, p in self._pending.items()}

    def run_due(self) -> float | None:
        """Attempt every queued attach that is due; seconds until the next one (None: none left)."""
        while not self._stop.is_set():
            with self._lock:
                key, item = self._pop_due()
                if key is None:
                    return self._heap[0][0] - self._clock.monotonic() if self._heap else None
            self._attempt(key, item)
        return None

    def _pop_due(self) -> tuple[Any, Any]:
        now = self._clock.monotonic()
        while self._heap:
            due, _, key = self._heap[0]
            item = self._pending.get(key)
            if item is None or item.due != due:  # done, or rescheduled since
                heapq.heappop(self._heap)
                continue
            if due > now:
                break
            heapq.heappop(self._heap)
            return key, item
        return None, None

    def _schedule(self, key: Key, item: _Pending, due: float) -> None:
        item.due = due
        self._pending[key] = item
        heapq.heappush(self._heap, (due, next(self._seq), key))

    def _attempt(self, key: Key, item: _Pending) -> None:
        coll = item.coll()
        if coll is None or coll.released:
            self._done(key, item, "collection released")
            return
        try:
            if _is_listing(key):
                coll.attach_listed()  # queues here an attach of each index it finds
                outcome = "listed"
            else:
                _, segment_id, field, index_id = key
                attached = coll.attach_index(segment_id, field, index_id)
                if attached is Attach.MISSING:
                    raise FileNotFoundError("the index store has no such file")
                outcome = attached.value
        except RETRYABLE as exc:
            self._failed(key, item, exc)
            return
        except Exception:
            log.exception("index attach failed, not retried collection=%s key=%s", coll.info.name, key)
            self._done(key, item, "error")
            return
        self._done(key, item, outcome)

    def _done(self, key: Key, item: _Pending, why: str) -> None:
        with self._lock:
            if self._pending.get(key) is item:
                del self._pending[key]
        if item.failures:
            what, fields = _describe(key)
            log.info(
                "%s retries ended collection_id=%s%s failures=%s outcome=%s",
                what,
                key[0],
                fields,
                item.failures,
                why,
            )

    def _failed(self, key: Key, item: _Pending, exc: BaseException) -> None:
        coll = item.coll()
        name = coll.info.name if coll is not None else "?"
        with self._lock:
            current = self._pending.get(key)
            if current is not None and current is not item and current.coll() is item.coll():
                item = current  # queued meanwhile (an announcement during a load's attempt)
            item.failures += 1
            delay = self.backoff.delay(item.failures, self._rnd())
            self._schedule(key, item, self._clock.monotonic() + delay)
        INDEX_ATTACH_FAILURES.labels(type(exc).__name__).inc()
        what, fields = _describe(key)
        log.warning(
            "%s failed, retrying collection=%s%s failures=%s retry_in=%.1fs reason=%s",
            what,
            name,
            fields,
            item.failures,
            delay,
            str(exc),  # not the exception: a log record would keep its frames (and the copy) alive
        )
        self._wake.set()


def _describe(key: Key) -> tuple[str, str]:
    """What a queued item is, and its key's fields after the collection, for a log line."""
    if _is_listing(key):
        return "index folder listing", ""
    return "index attach", f" segment={key[1]} field={key[2]} index_id={key[3]}"


def load_index_into(
    wanting: list[Any],
    info: Any,
    field_name: str,
    source: AbstractContextManager[Path | None],
    gpu_search: str,
) -> Attach:
    """Read the index file ``source`` gives and attach it to each sealed container of ``wanting``
    (the containers of one segment without it) whose row count it matches."""
    idx_info = info.indexes[field_name]
    f = info.schema.field(field_name)
    assert f is not None
    spec = IndexSpec.parse(
        idx_info.index_type, idx_info.metric_type, idx_info.params, int(f.dim or 0), f.dtype.name
    )
    mmap_default = info.properties.get("mmap.enabled", "false")
    mmap = idx_info.properties.get("mmap.enabled", mmap_default).lower() == "true"
    with source as local:
        if local is None:
            return Attach.MISSING
        outcome = Attach.UNWANTED  # an index of another size than the segment is not used
        for c in wanting:
            index = VectorIndex.load(local, spec, mmap=mmap, gpu_search=gpu_search)
            if index.ntotal == c.num_rows:
                c.indexes[field_name] = (idx_info.index_id, index)
                if f.dtype.name == "FLOAT_VECTOR" and not f.nullable:
                    c.keep_vectors_in(field_name, index)  # the index's copy of the vectors is enough
                what = (info.name, c.segment_id, field_name, idx_info.index_id, index.ntotal)
                log.info("index attached collection=%s segment=%s field=%s index_id=%s rows=%s", *what)
                outcome = Attach.ATTACHED
    return outcome


def attach_built(coll: Any, segment_id: int, field: str, index_id: int, queue: bool = False) -> Attach | None:
    """Attach a built index to ``coll`` now (a failure queued for retry), or with ``queue`` on its
    attacher's thread (None). A copy without an attacher (tools, tests) only logs a failure."""
    attacher: IndexAttacher | None = coll.attacher
    if attacher is None:
        return attach_or_log(coll, segment_id, field, index_id)
    if queue:
        attacher.submit(coll, segment_id, field, index_id)
        return None
    return attacher.attach(coll, segment_id, field, index_id)


def queue_listing(coll: Any) -> None:
    """List ``coll``'s index folder and attach what its sealed segments lack, on its attacher's
    thread; a copy without an attacher (tools, tests) does it now, a failed listing only logged."""
    attacher: IndexAttacher | None = coll.attacher
    if attacher is not None:
        attacher.submit_listing(coll)
        return
    try:
        coll.attach_listed()
    except LISTING_ERRORS as exc:
        listing_failed(coll, exc)


def listing_failed(coll: Any, exc: BaseException) -> None:
    """Listing ``coll``'s index folder failed: retried on its attacher's thread (its segments are
    searched exactly meanwhile); a copy without an attacher (tools, tests) only logs it."""
    if coll.attacher is not None:
        coll.attacher.listing_failed(coll, exc)
        return
    log.warning("index folder listing failed collection=%s reason=%s", coll.info.name, str(exc))


def attach_or_log(coll: Any, segment_id: int, field: str, index_id: int) -> Attach | None:
    """Attach now; a failure is logged and left (the segment is searched exactly): for a copy of a
    collection without an attacher (tools, tests)."""
    try:
        return coll.attach_index(segment_id, field, index_id)
    except RETRYABLE as exc:
        log.warning(
            "index attach failed collection=%s segment=%s field=%s index_id=%s reason=%s",
            coll.info.name,
            segment_id,
            field,
            index_id,
            str(exc),
        )
        return None


__all__ = [
    "Attach",
    "Backoff",
    "IndexAttacher",
    "attach_built",
    "attach_or_log",
    "listing_failed",
    "load_index_into",
    "queue_listing",
]
