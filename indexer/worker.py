"""The index worker: builds the FAISS index of every sealed segment, for each collection's index spec.

It reacts to segment announcements and catalog changes, and also reconciles on a timer
with the Delta tables (the source of truth), so a lost announcement or a crash mid-build
only delays an index. Files are written atomically beside the tables and announced on
the segments topic.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pyarrow.dataset as ds
from confluent_kafka import Consumer, KafkaException, TopicPartition

from indexer.arrow_vectors import arrow_vectors
from indexer.index import VectorIndex
from indexer.segments import index_file, sealed_segments
from indexer.spec import IndexSpec
from schemas.catalog import CollectionInfo
from schemas.segments import IndexBuilt
from schemas.topics import segments_topic
from walvus.catalog import Catalog
from walvus.log import KafkaLog, LogMessage, drain
from walvus.processes import on_stop_signal
from walvus.storage import ROWS, SegmentStore

log = logging.getLogger(__name__)


class IndexWorker:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Catalog,
        store: SegmentStore,
        namespace: str,
        reconcile_seconds: float = 5.0,
    ) -> None:
        self.kafka, self.catalog, self.store, self.ns = kafka, catalog, store, namespace
        self.reconcile_seconds = reconcile_seconds
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
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("index reconcile failed")
            self._wake.wait(self.reconcile_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _listen(self) -> None:
        consumer = Consumer(
            {**self.kafka.conf, "group.id": f"{self.ns}-indexer", "enable.auto.commit": False}
        )
        consumer.assign(
            [TopicPartition(segments_topic(self.ns), 0, -1)]
        )  # from the end: reconcile covers the past
        while not self._stop.is_set():
            try:
                msgs = drain(consumer, 100, 0.2)
            except KafkaException:
                continue
            if any(b'"sealed"' in (m.value() or b"") for m in msgs if not m.error()):
                self._wake.set()
        consumer.close()

    def reconcile(self) -> int:
        """Build every missing index. Returns how many were built."""
        built = 0
        for info in self.catalog.collections():
            if not info.indexes:
                continue
            segs = sealed_segments(self.store, info.collection_id)
            for field, idx in info.indexes.items():
                for seg, rows in sorted(segs.items()):
                    if self._stop.is_set():
                        return built
                    if (
                        rows
                        and not index_file(self.store, info.collection_id, seg, field, idx.index_id).exists()
                    ):
                        current = self.catalog.get(info.name)
                        if current is None or field not in current.indexes:
                            break
                        self.build(current, seg, field)
                        built += 1
        self.built += built
        return built

    def build(self, info: CollectionInfo, segment_id: int, field: str) -> None:
        idx = info.indexes[field]
        f = info.schema.field(field)
        assert f is not None
        table = self.store.read(
            info.collection_id, ROWS, filter=ds.field("_segment") == segment_id, columns=[field, "_seq"]
        )
        if table is None or table.num_rows == 0:
            return
        table = table.sort_by("_seq")
        vectors = arrow_vectors(table.column(field), f.dtype.name, int(f.dim or 0))
        spec = IndexSpec.parse(idx.index_type, idx.metric_type, idx.params, int(f.dim or 0), f.dtype.name)
        t0 = time.monotonic()
        index = VectorIndex.build(spec, vectors)
        path = index_file(self.store, info.collection_id, segment_id, field, idx.index_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        index.save(tmp)
        os.replace(tmp, path)
        ann = IndexBuilt(
            info.collection_id,
            info.name,
            segment_id,
            field,
            idx.index_name,
            idx.index_id,
            str(path),
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
    from walvus.settings import KafkaSettings, StorageSettings, WalvusSettings

    base = WalvusSettings()
    storage = StorageSettings()
    kafka = KafkaLog(KafkaSettings().client_config(bootstrap))
    catalog = Catalog(kafka, base.namespace).start()
    worker = IndexWorker(kafka, catalog, storage.store(), base.namespace)
    on_stop_signal(worker.stop)
    log.info("indexer running bootstrap=%s", bootstrap)
    worker.run()
    catalog.stop()
