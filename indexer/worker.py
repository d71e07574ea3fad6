"""The index worker: builds the FAISS index of every sealed segment, for each collection's index spec.

It reacts to segment announcements and catalog changes, and also reconciles on a timer
with the Delta tables (the source of truth), so a lost announcement or a crash mid-build
only delays an index. Files are written atomically beside the tables and announced on
the segments topic.

Each (collection, segment, field, index) is built alone: one that raises is recorded
(``indexer.failures``), retried with exponential backoff, published (a failure file beside
the index file, read by DescribeIndex, and an ``IndexFailed`` announcement), and every other
item keeps building. A collection whose segments cannot even be listed fails alone the same way.
Only vector fields get FAISS indexes; scalar indexes (INVERTED, STL_SORT...) are catalog entries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import faiss
import pyarrow as pa
import pyarrow.dataset as ds

from indexer.compactor import Compactor
from indexer.failures import Backoff, IndexFailure, IndexFailures
from indexer.index import VectorIndex
from schemas.catalog import CollectionInfo
from schemas.index_spec import IndexSpec
from schemas.segments import IndexBuilt, IndexFailed
from schemas.topics import segments_topic
from schemas.vector_arrays import arrow_vectors
from walvus.catalog import Catalog
from walvus.exceptions import LogUnavailable
from walvus.index_progress import sealed_segments
from walvus.log import KafkaLog, LogMessage
from walvus.log_tail import END, Tail
from walvus.once_log import OnceLog
from walvus.processes import on_stop_signal
from walvus.storage import ROWS, SegmentStore

if TYPE_CHECKING:
    from walvus.gc import GcLoop

log = logging.getLogger(__name__)


class IndexWorker:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Catalog,
        store: SegmentStore,
        namespace: str,
        reconcile_seconds: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.kafka, self.catalog, self.store, self.ns = kafka, catalog, store, namespace
        self.reconcile_seconds = reconcile_seconds
        self.failures = IndexFailures(backoff)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.built = 0
        catalog.add_listener(lambda info: self._wake.set())

    def run(self, timeout: float | None = None) -> None:
        """Build until stopped (or ``timeout`` seconds, for tools and tests)."""
        self.kafka.ensure_topic(segments_topic(self.ns), 1)
        listener = threading.Thread(target=self._listen, daemon=True, name="segments-listener")
        listener.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        failing = OnceLog(log)  # items fail alone; this is the catalog itself failing
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self._wake.clear()
            try:
                self.reconcile()
            except Exception as exc:
                failing.error("index reconcile failed", exc)
            else:
                failing.clear()
            self._wake.wait(self.reconcile_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _listen(self) -> None:
        tail = Tail(self.kafka.conf, group=f"{self.ns}-indexer")
        tail.assign({(segments_topic(self.ns), 0): END})  # from the end: reconcile covers the past
        while not self._stop.is_set():
            try:
                msgs = tail.poll(100, 0.2)
            except LogUnavailable:
                continue
            if any(b'"sealed"' in (m.value() or b"") for m in msgs if not m.error()):
                self._wake.set()
        tail.close()

    def reconcile(self) -> int:
        """Build every missing index that is not backing off. Returns how many were built."""
        built = 0
        for info in self.catalog.collections():
            if self._stop.is_set():
                break
            built += self._reconcile_collection(info)
        self.built += built
        return built

    def _reconcile_collection(self, info: CollectionInfo) -> int:
        fields = [
            f for f in info.indexes if (fd := info.schema.field(f)) is not None and fd.dtype.has_index_file
        ]
        key = (info.collection_id, "segments")
        if not fields or not self.failures.due(key):
            return 0
        try:
            segs = sealed_segments(self.store, info.collection_id)
            have = self.store.indexes.built(info.collection_id)  # one listing, also on an object store
        except Exception as exc:
            self._failed(key, info, exc, what="listing sealed segments and index files")
            return 0
        self._succeeded(key, info, "listing sealed segments and index files")
        built = 0
        for field in fields:
            for seg, rows in sorted(segs.items()):
                if self._stop.is_set():
                    return built
                index_id = info.indexes[field].index_id
                item = (info.collection_id, seg, field, index_id)
                if not rows or not self.failures.due(item):
                    continue
                if (seg, field, index_id) in have:
                    continue
                current = self.catalog.by_id(info.collection_id)  # by id: a rename keeps the collection
                idx = None if current is None else current.indexes.get(field)
                if current is None or not current.active or idx is None or idx.index_id != index_id:
                    break  # dropped or recreated meanwhile: the next pass sees the new state
                try:
                    self.build(current, seg, field)
                except Exception as exc:
                    self._failed(item, current, exc, what=f"segment={seg} field={field}")
                    continue
                self._succeeded(item, current, f"segment={seg} field={field}")
                built += 1
        return built

    def _failed(self, key: tuple, info: CollectionInfo, exc: Exception, what: str) -> None:
        failure = self.failures.record(key, exc, info.name)
        if failure.new_reason:  # each distinct error of an item once, with its traceback
            log.warning(
                "index build failed collection=%s %s attempts=%s retry_in=%.0fs reason=%s",
                info.name,
                what,
                failure.attempts,
                self.failures.backoff.delay(failure.attempts),
                failure.reason,
                exc_info=exc,
            )
        else:
            log.debug(
                "index build failed again collection=%s %s attempts=%s", info.name, what, failure.attempts
            )
        if len(key) == 4:
            self._publish_failure(info, key, failure)

    def _succeeded(self, key: tuple, info: CollectionInfo, what: str) -> None:
        if len(key) == 4:  # also a failure file left by an earlier run of the indexer
            _, seg, field, index_id = key
            self.store.indexes.remove_failure(info.collection_id, seg, field, index_id)
        if self.failures.clear(key):
            log.info("index build recovered collection=%s %s", info.name, what)

    def _publish_failure(self, info: CollectionInfo, key: tuple, failure: IndexFailure) -> None:
        """The failure file (durable, read by DescribeIndex), then a hint on the segments topic."""
        _, seg, field, index_id = key
        ann = IndexFailed(
            info.collection_id,
            info.name,
            seg,
            field,
            info.indexes[field].index_name,
            index_id,
            failure.reason,
            failure.attempts,
            failure.next_retry_ts,
        )
        try:
            record = {k: v for k, v in ann.__dict__.items() if k != "kind"}
            self.store.indexes.write_failure(info.collection_id, seg, field, index_id, record)
            if failure.new_reason:
                self.kafka.append([LogMessage(segments_topic(self.ns), 0, ann.to_json())])
        except Exception:
            log.exception(
                "cannot publish index failure collection=%s segment=%s field=%s", info.name, seg, field
            )

    def build(self, info: CollectionInfo, segment_id: int, field: str) -> None:
        idx = info.indexes[field]
        f = info.schema.field(field)
        if f is None or not f.dtype.has_index_file:
            raise ValueError(f"field {field!r} of collection {info.name} is not a vector field")
        rows = self.store.dataset(info.collection_id, ROWS)
        # a vector field added after these rows were written: the table may not know it yet
        stored = rows is not None and field in rows.schema.names
        table = self.store.read(
            info.collection_id,
            ROWS,
            filter=ds.field("_segment") == segment_id,
            columns=[field, "_seq"] if stored else ["_seq"],
        )
        if table is None or table.num_rows == 0:
            return
        if not stored:
            table = table.append_column(field, pa.nulls(table.num_rows, f.arrow_type()))
        table = table.sort_by("_seq")
        vectors = arrow_vectors(table.column(field), f.dtype.name, int(f.dim or 0))
        spec = IndexSpec.parse(idx.index_type, idx.metric_type, idx.params, int(f.dim or 0), f.dtype.name)
        t0 = time.monotonic()
        index = VectorIndex.build(spec, vectors)
        path = self.store.indexes.write_index(info.collection_id, segment_id, field, idx.index_id, index.save)
        ann = IndexBuilt(
            info.collection_id,
            info.name,
            segment_id,
            field,
            idx.index_name,
            idx.index_id,
            path,
            table.num_rows,
        )
        self.kafka.append([LogMessage(segments_topic(self.ns), 0, ann.to_json())])
        log.info(
            "built index collection=%s segment=%s field=%s type=%s rows=%s seconds=%.2f",
            info.name,
            segment_id,
            field,
            idx.index_type,
            table.num_rows,
            time.monotonic() - t0,
        )


def run(bootstrap: str) -> None:
    from prometheus_client import start_http_server

    from walvus.settings import IndexerSettings, KafkaSettings, StorageSettings, WalvusSettings

    base = WalvusSettings()
    storage = StorageSettings()
    kafka = KafkaLog(KafkaSettings().client_config(bootstrap))
    catalog = Catalog(kafka, base.namespace).start()
    settings = IndexerSettings()
    backoff = Backoff(settings.index_retry_first_seconds, settings.index_retry_max_seconds)
    worker = IndexWorker(kafka, catalog, storage.store(), base.namespace, backoff=backoff)
    from walvus.snapshots import SnapshotBook

    snapshots = SnapshotBook(kafka, base.namespace).start()  # what snapshots pin is never removed
    compactor = Compactor(
        kafka,
        catalog,
        storage.store(),
        base.namespace,
        policy=settings.compaction_policy(),
        check_seconds=settings.compaction_check_seconds,
        on_compacted=worker._wake.set,  # build the new segments' indexes now
        keep=snapshots.pinned,
    )
    on_stop_signal(worker.stop)
    faiss.omp_set_num_threads(settings.build_threads())  # builds run on this thread
    with contextlib.suppress(OSError):
        os.nice(settings.indexer_nice)
    if settings.indexer_metrics_port:
        try:
            start_http_server(settings.indexer_metrics_port, addr=settings.indexer_metrics_host)
        except OSError as exc:  # metrics are not worth refusing to build indexes
            log.error("indexer metrics disabled port=%s error=%s", settings.indexer_metrics_port, exc)
    log.info(
        "indexer running bootstrap=%s metrics_port=%s build_threads=%s nice=%s",
        bootstrap,
        settings.indexer_metrics_port,
        settings.build_threads(),
        settings.indexer_nice,
    )
    kafka.ensure_topic(segments_topic(base.namespace), 1)
    compactor.start()
    gc = _start_gc(kafka, catalog, storage.store(), base.namespace, bootstrap, keep=snapshots.pinned)
    worker.run()
    compactor.stop()
    if gc is not None:
        gc.stop()
    catalog.stop()


def _start_gc(
    kafka: KafkaLog,
    catalog: Catalog,
    store: SegmentStore,
    namespace: str,
    bootstrap: str,
    keep: Callable[[int], bool] | None = None,
) -> GcLoop | None:
    """Garbage collection runs beside the builds, on its own thread (``walvus.gc``); ``keep`` says
    which collections' tables are pinned (snapshots), by collection id."""
    from walvus.gc import GarbageCollector, GcLoop, keep_nothing
    from walvus.retention import WalRetention
    from walvus.settings import GcSettings, KafkaSettings

    settings = GcSettings()
    if not settings.gc_enabled:
        log.info("garbage collection disabled")
        return None
    gc = GarbageCollector(
        kafka,
        WalRetention(KafkaSettings().client_config(bootstrap)),
        catalog,
        store,
        namespace,
        dropped_retention_seconds=settings.gc_dropped_retention_seconds,
        truncate_wal=settings.gc_truncate_wal,
        wal_retention_seconds=settings.gc_wal_retention_seconds,
        orphan_grace_seconds=settings.gc_index_grace_seconds,
        keep=keep or keep_nothing,
    )
    log.info(
        "garbage collection every %.0fs dropped_retention=%.0fs truncate_wal=%s wal_retention=%.0fs",
        settings.gc_interval_seconds,
        settings.gc_dropped_retention_seconds,
        settings.gc_truncate_wal,
        settings.gc_wal_retention_seconds,
    )
    return GcLoop(gc, settings.gc_interval_seconds).start()
