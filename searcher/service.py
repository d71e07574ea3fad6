"""The searcher service: keeps loaded collections current and answers search and query.

It runs inside the gateway process (the gateway talks to it through ``walvus.searcher.Searcher``),
or as its own process (``walvus searcher``, ``searcher.process``) serving the shards its consumer
group assigns it. It is three parts: the registry of what is held (``searcher.registry``), the
read barrier of each consistency level (``searcher.consistency``), and the execution of one read
over a snapshot (``searcher.execution``); here are the tails that keep it all current.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pyarrow as pa

from indexer import single_threaded_adds
from schemas.catalog import CollectionInfo
from schemas.segments import CompactionRequested, IndexBuilt, SegmentsCompacted, SegmentSealed, is_compacted
from schemas.topics import segments_topic
from searcher import execution
from searcher.compacted import CompactionStates
from searcher.consistency import ReadBarrier
from searcher.index_attach import IndexAttacher
from searcher.ownership import Assignment
from searcher.registry import Registry
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.databases import using_db
from walvus.log import KafkaLog
from walvus.searcher import CompactionStatus, Hits, QueryRequest, SearchRequest
from walvus.settings import SearcherSettings
from walvus.storage import SegmentStore

log = logging.getLogger(__name__)
MAX_TOPK = execution.MAX_TOPK


class SearcherService:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Any,
        store: SegmentStore,
        namespace: str,
        settings: SearcherSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``clock``: what TTL expiry and the Bounded staleness bound read."""
        from searcher.tail import AnnouncementTail, WalTail

        self.settings = settings or SearcherSettings()
        self.kafka = kafka
        self.catalog = catalog
        self.store = store
        self.ns = namespace
        self._growing_added = threading.Event()
        # announced index files are downloaded and read on a worker thread, failures retried there
        self.index_attacher = IndexAttacher(clock)
        self.registry = Registry(
            catalog, store, namespace, self.settings, self._growing_added.set, clock, self.index_attacher
        )
        self.kafka.ensure_topic(segments_topic(namespace), 1)
        reg = self.registry
        self.wal_tail = WalTail(kafka.conf, reg.apply, self._after_poll, reg.advance, reg.reload, clock)
        reg.tail = self.wal_tail
        self.barrier = ReadBarrier(kafka, namespace, self.settings, self.wal_tail, clock)
        self.ann_tail = AnnouncementTail(
            kafka.conf, segments_topic(namespace), self._on_sealed, self._on_index, self._on_compaction
        )
        self.compaction_states = CompactionStates()
        self._stopped = threading.Event()
        self._interim_thread = threading.Thread(target=self._fill_interim, name="interim-index", daemon=True)
        self.index_attacher.start()
        self.wal_tail.start()
        self.ann_tail.start()
        self._interim_thread.start()
        catalog.add_listener(reg.on_catalog)

    @classmethod
    def from_settings(cls, bootstrap: str, walvus: Any) -> SearcherService:
        svc = cls(walvus.kafka, walvus.catalog, walvus.store, walvus.ns)
        for info in walvus.catalog.collections():
            if info.loaded:  # the catalog remembers what was loaded: reload after a restart
                with using_db(info.db_name):
                    svc.load(info.name)
        return svc

    def close(self) -> None:
        self._stopped.set()
        self._growing_added.set()
        self.wal_tail.stop()
        self.ann_tail.stop()
        self.index_attacher.stop()
        self._interim_thread.join(5)

    # what is held --------------------------------------------------------------------------------
    def hold_assigned(self, ownership: Any, replica_group: int = 0) -> None:
        self.registry.hold_assigned(ownership, replica_group)

    def on_assignment(self, assignment: Assignment) -> None:
        self.registry.on_assignment(assignment)

    def held(self) -> dict[int, tuple[frozenset[int], int]]:
        return self.registry.held()

    def load(self, collection: str, partitions: list[str] | None = None) -> None:
        self.registry.load(collection, partitions)

    def release(self, collection: str, partitions: list[str] | None = None) -> None:
        self.registry.release(collection, partitions)

    def loading_progress(self, collection: str) -> int:
        return self.registry.loading_progress(collection)

    def is_loaded(self, collection: str) -> bool:
        return self.registry.is_loaded(collection)

    def is_loading(self, collection: str) -> bool:
        return self.registry.is_loading(collection)

    # keeping current -----------------------------------------------------------------------------
    def _fill_interim(self) -> None:
        """Background: keep every loaded collection's interim indexes up with its growing rows."""
        single_threaded_adds()
        while not self._stopped.is_set():
            self._growing_added.wait(0.25)  # also publishes rows added since the last copy
            self._growing_added.clear()
            if self._fill_interim_once():
                self._growing_added.set()

    def _fill_interim_once(self) -> bool:
        """One round over the loaded collections; True when rows are left for another round.

        A function of its own so that no collection outlives it in a local variable: a dropped
        copy must be freed when the registry lets it go, before it hands the memory back."""
        more = False
        for coll in self.registry.loaded():
            try:
                more |= coll.fill_interim()
            except Exception:
                log.exception("interim index update failed collection=%s", coll.info.name)
        return more

    def _after_poll(self) -> None:
        for coll in self.registry.loaded():
            coll.maybe_swap()

    def _on_sealed(self, ann: SegmentSealed) -> None:
        coll = self.registry.get(ann.collection_id)
        if coll is not None:
            coll.note_sealed(ann.shard, ann.last_offset, ann.table_version)

    def _on_compaction(self, ann: CompactionRequested | SegmentsCompacted) -> None:
        self.compaction_states.note(ann)
        coll = self.registry.get(ann.collection_id)
        if coll is not None and isinstance(ann, SegmentsCompacted):
            coll.note_compacted(ann)

    def compaction_requested(self, collection: str, compaction_id: int) -> None:
        """This gateway asked for a compaction: Executing from now on, before the topic says so."""
        self.compaction_states.note(CompactionRequested(-1, collection, compaction_id))

    def compaction(self, compaction_id: int) -> CompactionStatus | None:
        return self.compaction_states.get(compaction_id)

    def _on_index(self, ann: IndexBuilt) -> None:
        """On the segments tail: queue the attach (a download) for the attacher's thread."""
        coll = self.registry.get(ann.collection_id)
        if coll is not None:
            self.index_attacher.submit(coll, ann.segment_id, ann.field, ann.index_id)

    # consistency -------------------------------------------------------------------------------------
    def note_write(self, collection_id: int, positions: dict[int, int], ts: int) -> None:
        self.barrier.note_write(collection_id, positions)

    @property
    def session_is_local(self) -> bool:
        return self.barrier.session_is_local

    @session_is_local.setter
    def session_is_local(self, value: bool) -> None:
        self.barrier.session_is_local = value

    # reads ---------------------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> list[Hits]:
        return self.served_search(req)[0]

    def served_search(self, req: SearchRequest) -> tuple[list[Hits], frozenset[int], str]:
        """``search``, the shards it read (those of ``req.shards`` held here) and its metric."""
        coll = self.registry.collection(req.collection, req.collection_id)
        return execution.search(coll, req, self.barrier, self.settings.interim_ef)

    def bm25_counts(self, req: SearchRequest) -> list[tuple[int, float, list[float]]]:
        """BM25 statistics of ``req``'s queries over the shards held here (a gateway sums them)."""
        coll = self.registry.collection(req.collection, req.collection_id)
        return execution.bm25_sums(coll, req, self.barrier)

    def query(self, req: QueryRequest) -> pa.Table:
        return self.served_query(req)[0]

    def served_query(self, req: QueryRequest) -> tuple[pa.Table, frozenset[int]]:
        """``query`` and the shards it read (those of ``req.shards`` held here)."""
        coll = self.registry.collection(req.collection, req.collection_id)
        result, shards = execution.query(coll, req, self.barrier)
        return result, shards

    def stats(self, collection: str) -> dict[str, Any]:
        return self.stats_of(self.catalog.require(collection))

    def stats_of(self, info: CollectionInfo) -> dict[str, Any]:
        coll = self.registry.get(info.collection_id)
        if coll is None:
            return {"row_count": None}
        view = coll.snapshot()
        return {
            "row_count": sum(c.count(a) for c, a in view),
            "sealed_segments": sum(1 for c, _ in view if c.sealed),
            "growing_rows": sum(c.num_rows for c, _ in view if not c.sealed),
            "interim_indexed_rows": coll.interim.rows(),
            "scanned_rows": coll.scanned_rows,
            "indexed_segments": sum(1 for c, _ in view if c.indexes),
            "loaded_indexes": sum(len(c.indexes) for c, _ in view if c.sealed),
            # scalar-index postings built on sealed segments (each one a filter pruned through it)
            "scalar_postings": sum(len(c.postings) for c, _ in view if c.sealed),
            "compacted_segments": sum(1 for c, _ in view if c.sealed and is_compacted(c.segment_id)),
            # how far this searcher has consumed the WAL: the last offset applied, per shard
            "consumed_offsets": ",".join(f"{s}:{off}" for s, off in sorted(coll.applied().items())),
        }


__all__ = ["SearcherService"]
