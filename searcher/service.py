"""The searcher service: loads collections, keeps them current, answers search and query.

It runs inside the gateway process (the gateway talks to it through ``walvus.searcher.Searcher``).
Each read goes through ``searcher.consistency.ReadBarrier`` for its consistency level.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pyarrow as pa

from indexer.interim import single_threaded_adds
from schemas.catalog import CollectionInfo
from schemas.exceptions import CollectionNotLoaded, InvalidArgument, LimitExceeded, PartitionNotFound
from schemas.filters import CompiledFilter
from schemas.scalar_index import scalar_sources
from schemas.segments import CompactionRequested, IndexBuilt, SegmentsCompacted, SegmentSealed, is_compacted
from schemas.sparse import drop_small
from schemas.sparse_index_spec import drop_ratio_search
from schemas.topics import segments_topic, wal_topic
from schemas.wal import WalRecord
from searcher.aggregation import aggregate
from searcher.collection import LoadedCollection
from searcher.compacted import CompactionStates
from searcher.consistency import ReadBarrier, Snapshot
from searcher.grouping import Neighbours, View, grouped_hits
from searcher.metrics import ConsumedGauge
from searcher.ownership import Assignment
from searcher.query import COUNT, output_columns, query_rows
from searcher.requests import (
    check_partitions,
    check_queries,
    compiled_filter,
    empty_table,
    only_vector_field,
    split_hits,
    without_dropped,
)
from searcher.search import container_mask, knn, pruned, range_knn, resolve_metric, with_vectors
from searcher.sparse_search import bm25_counts, sparse_knn
from walvus.databases import using_db
from walvus.log import KafkaLog
from walvus.searcher import (
    CompactionStatus,
    Hits,
    QueryRequest,
    SearchRequest,
)
from walvus.settings import SearcherSettings
from walvus.storage import SegmentStore

log = logging.getLogger(__name__)
MAX_TOPK = 16_384


class SearcherService:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Any,
        store: SegmentStore,
        namespace: str,
        settings: SearcherSettings | None = None,
    ) -> None:
        from searcher.tail import AnnouncementTail, WalTail

        self.settings = settings or SearcherSettings()
        self._interim = self.settings.interim()
        self.kafka = kafka
        self.catalog = catalog
        self.store = store
        self.ns = namespace
        self._loaded: dict[int, LoadedCollection] = {}  # by collection id
        self._by_topic: dict[str, LoadedCollection] = {}
        self._loading: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._consumed = ConsumedGauge()
        self.kafka.ensure_topic(segments_topic(namespace), 1)
        self.wal_tail = WalTail(kafka.conf, self._apply, self._after_poll, self._advance, self._reload)
        self.barrier = ReadBarrier(kafka, namespace, self.settings, self.wal_tail)
        self.ann_tail = AnnouncementTail(
            kafka.conf, segments_topic(namespace), self._on_sealed, self._on_index, self._on_compaction
        )
        self.compaction_states = CompactionStates()
        # a ``walvus searcher`` holds the shards its consumer group assigns (topic -> shards);
        # None: every shard of every loaded collection (the searcher inside the gateway)
        self._assignment: Assignment | None = None
        self._ownership: Any = None
        self.replica_group = 0
        self._stopped = threading.Event()
        self._growing_added = threading.Event()
        self._interim_thread = threading.Thread(target=self._fill_interim, name="interim-index", daemon=True)
        self.wal_tail.start()
        self.ann_tail.start()
        self._interim_thread.start()
        catalog.add_listener(self._on_catalog)

    @classmethod
    def from_settings(cls, bootstrap: str, walvus: Any) -> SearcherService:
        svc = cls(walvus.kafka, walvus.catalog, walvus.store, walvus.ns)
        for info in walvus.catalog.collections():
            if info.loaded:  # the catalog remembers what was loaded: reload after a restart
                with using_db(info.db_name):
                    svc.load(info.name)
        return svc

    def hold_assigned(self, ownership: Any, replica_group: int = 0) -> None:
        """Hold only the shards ``ownership`` (``searcher.ownership.ShardOwnership``) is assigned,
        of the loaded collections with more than ``replica_group`` replicas."""
        self.replica_group = replica_group
        self._assignment = {}
        self._ownership = ownership
        ownership.follow(self._followed_topics())

    def _serves(self, info: CollectionInfo) -> bool:
        return info.active and info.loaded and info.replica_number > self.replica_group

    def _followed_topics(self) -> set[str]:
        return {wal_topic(self.ns, i.collection_id) for i in self.catalog.collections() if self._serves(i)}

    def on_assignment(self, assignment: Assignment) -> None:
        """The group moved shards: load the copies that change, drop the ones left with none."""
        self._assignment = assignment
        for info in self.catalog.collections():
            if self._serves(info):
                self._rebalance(info)

    def _rebalance(self, info: CollectionInfo) -> None:
        assert self._assignment is not None
        owned = self._assignment.get(wal_topic(self.ns, info.collection_id), frozenset())
        coll = self._loaded.get(info.collection_id)
        if coll is not None and coll.owned == owned:
            return
        if not owned:
            if coll is not None:
                self._drop(info.collection_id)
            return
        with self._lock:
            if info.collection_id in self._loading:
                return  # the load re-checks the assignment when it is done
            t = threading.Thread(target=self._load, args=(info,), name=f"rebalance-{info.name}", daemon=True)
            self._loading[info.collection_id] = t
        t.start()

    def held(self) -> dict[int, tuple[frozenset[int], int]]:
        """Per loaded collection id: the shards this searcher holds, and its load progress."""
        return {
            cid: (frozenset(c.shards) if c.owned is None else c.owned, c.progress)
            for cid, c in list(self._loaded.items())
        }

    def close(self) -> None:
        self._stopped.set()
        self._growing_added.set()
        self.wal_tail.stop()
        self.ann_tail.stop()
        self._interim_thread.join(5)

    # load / release ----------------------------------------------------------------------------
    def load(self, collection: str, partitions: list[str] | None = None) -> None:
        info = self.catalog.require(collection)
        for p in partitions or []:
            if p not in info.partitions:
                raise PartitionNotFound(collection, p)
        with self._lock:
            if info.collection_id in self._loaded or info.collection_id in self._loading:
                return
            t = threading.Thread(target=self._load, args=(info,), name=f"load-{collection}", daemon=True)
            self._loading[info.collection_id] = t
        t.start()

    def _load_if_absent(self, info: CollectionInfo) -> None:
        with self._lock:
            if info.collection_id in self._loaded or info.collection_id in self._loading:
                return
            self._loading[info.collection_id] = threading.current_thread()
        self._load(info)

    def _load(self, info: CollectionInfo) -> None:
        topic = wal_topic(self.ns, info.collection_id)
        owned = None if self._assignment is None else self._assignment.get(topic, frozenset())
        if owned is not None and not owned:
            with self._lock:
                self._loading.pop(info.collection_id, None)
            return  # no shard of it is assigned here (yet)
        coll = LoadedCollection(
            info,
            self.store,
            interim_settings=self._interim,
            handoff_wait=self.settings.handoff_wait_seconds,
            gpu_search=self.settings.gpu_search,
            owned=owned,
        )
        try:
            starts = coll.load()
        except Exception:
            log.exception("loading failed collection=%s", info.name)
            with self._lock:
                self._loading.pop(info.collection_id, None)
            return
        with self._lock:
            self._loaded[info.collection_id] = coll
            self._by_topic[topic] = coll
            self._loading.pop(info.collection_id, None)
        self.wal_tail.unassign(topic)  # the shards an earlier copy held
        self.wal_tail.assign(topic, starts)
        log.info(
            "loaded collection=%s rows=%s shards=%s",
            info.name,
            sum(c.num_rows for c in coll.containers),
            sorted(coll.shards),
        )
        if self._assignment is not None and self._serves(info):
            self._rebalance(info)  # the group may have moved shards while this copy was read

    def _reload(self, topic: str) -> None:
        """The WAL records this searcher was to read next were deleted (it fell behind the WAL's
        retention, which never passes what Delta holds): load the collection again from Delta.
        Until the new copy is in, the old one answers."""
        with self._lock:
            coll = self._by_topic.get(topic)
            if coll is None or coll.info.collection_id in self._loading:
                return
            info = self.catalog.by_id(coll.info.collection_id) or coll.info
            t = threading.Thread(target=self._load, args=(info,), name=f"reload-{info.name}", daemon=True)
            self._loading[info.collection_id] = t
        log.warning("reloading collection from Delta: the WAL was truncated past it collection=%s", info.name)
        self.wal_tail.unassign(topic)
        t.start()

    def release(self, collection: str, partitions: list[str] | None = None) -> None:
        info = self.catalog.require(collection)
        if partitions:
            return  # partitions of a loaded collection stay in memory; the catalog records the state
        self._drop(info.collection_id)

    def _drop(self, collection_id: int) -> None:
        topic = wal_topic(self.ns, collection_id)
        self.wal_tail.unassign(topic)
        with self._lock:
            coll = self._loaded.pop(collection_id, None)
            self._by_topic.pop(topic, None)
        if coll is not None:
            self._consumed.forget(coll.info.qualified)

    def loading_progress(self, collection: str) -> int:
        info = self.catalog.require(collection)
        coll = self._loaded.get(info.collection_id)
        if coll is None:
            return 0 if info.collection_id in self._loading else 0
        return coll.progress

    def is_loaded(self, collection: str) -> bool:
        info = self.catalog.get(collection)
        return info is not None and info.collection_id in self._loaded

    def is_loading(self, collection: str) -> bool:
        info = self.catalog.get(collection)
        return info is not None and info.collection_id in self._loading

    # keeping current -----------------------------------------------------------------------------
    def _apply(self, topic: str, shard: int, offset: int, record: WalRecord) -> None:
        coll = self._by_topic.get(topic)
        if coll is not None:
            coll.apply(shard, offset, record)
            if coll.interim.fields:
                self._growing_added.set()

    def _fill_interim(self) -> None:
        """Background: keep every loaded collection's interim indexes up with its growing rows."""
        single_threaded_adds()
        while not self._stopped.is_set():
            self._growing_added.wait(0.25)  # also publishes rows added since the last copy
            self._growing_added.clear()
            more = False
            for coll in list(self._loaded.values()):
                try:
                    more |= coll.fill_interim()
                except Exception:
                    log.exception("interim index update failed collection=%s", coll.info.name)
            if more:
                self._growing_added.set()

    def _advance(self, topic: str, shard: int, offset: int) -> None:
        coll = self._by_topic.get(topic)
        if coll is not None:
            coll.mark_applied(shard, offset)
            self._consumed.set(coll.info.qualified, shard, offset)

    def _after_poll(self) -> None:
        for coll in list(self._loaded.values()):
            coll.maybe_swap()

    def _on_sealed(self, ann: SegmentSealed) -> None:
        coll = self._loaded.get(ann.collection_id)
        if coll is not None:
            coll.note_sealed(ann.shard, ann.last_offset, ann.table_version)

    def _on_compaction(self, ann: CompactionRequested | SegmentsCompacted) -> None:
        self.compaction_states.note(ann)
        coll = self._loaded.get(ann.collection_id)
        if coll is not None and isinstance(ann, SegmentsCompacted):
            coll.note_compacted(ann)

    def compaction_requested(self, collection: str, compaction_id: int) -> None:
        """This gateway asked for a compaction: Executing from now on, before the topic says so."""
        self.compaction_states.note(CompactionRequested(-1, collection, compaction_id))

    def compaction(self, compaction_id: int) -> CompactionStatus | None:
        return self.compaction_states.get(compaction_id)

    def _on_index(self, ann: IndexBuilt) -> None:
        from pathlib import Path

        coll = self._loaded.get(ann.collection_id)
        if coll is not None:
            coll.attach_index(ann.segment_id, ann.field, ann.index_id, Path(ann.path))

    def _on_catalog(self, info: CollectionInfo) -> None:
        if self._ownership is not None:
            self._ownership.follow(self._followed_topics())
            if not self._serves(info):
                self._drop(info.collection_id)
            elif self._loaded.get(info.collection_id) is not None:
                self._loaded[info.collection_id].update_info(info)
            else:
                self._rebalance(info)
            return
        coll = self._loaded.get(info.collection_id)
        if coll is None:
            if info.active and info.loaded and info.collection_id not in self._loading:
                # loaded elsewhere (another gateway, or a CDC source site): load here too
                threading.Thread(target=self._load_if_absent, args=(info,), daemon=True).start()
            return
        if not info.active or not info.loaded:
            self._drop(info.collection_id)
        else:
            if coll.info.qualified != info.qualified:  # renamed: the gauge follows the new name
                self._consumed.forget(coll.info.qualified)
            coll.update_info(info)

    # consistency -------------------------------------------------------------------------------------
    def note_write(self, collection_id: int, positions: dict[int, int], ts: int) -> None:
        self.barrier.note_write(collection_id, positions)

    @property
    def session_is_local(self) -> bool:
        return self.barrier.session_is_local

    @session_is_local.setter
    def session_is_local(self, value: bool) -> None:
        self.barrier.session_is_local = value

    def _collection(self, name: str, collection_id: int = 0) -> LoadedCollection:
        """By the id the gateway resolved when it has one: a rename or an alias switch between
        the gateway's lookup and this one cannot make the request miss or change collection."""
        cid = collection_id or self.catalog.require(name).collection_id
        coll = self._loaded.get(cid)
        if coll is None:
            raise CollectionNotLoaded(name)
        return coll

    # search ------------------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> list[Hits]:
        return self.served_search(req)[0]

    def served_search(self, req: SearchRequest) -> tuple[list[Hits], frozenset[int], str]:
        """``search``, the shards it read (those of ``req.shards`` held here) and its metric."""
        coll = self._collection(req.collection, req.collection_id)
        info = coll.info
        served = _served(coll, req.shards)
        field_name = req.anns_field or only_vector_field(info)
        f = info.schema.field(field_name)
        if f is None or not f.dtype.is_vector:
            raise InvalidArgument(f"field {field_name} is not a vector field of collection {info.name}")
        k = req.limit + req.offset
        if req.limit < 1 or k > MAX_TOPK:
            raise LimitExceeded(f"topk + offset must be between 1 and {MAX_TOPK}, got {k}")
        if len(req.queries) > MAX_TOPK:
            raise LimitExceeded(f"nq must be at most {MAX_TOPK}, got {len(req.queries)}")
        queries = check_queries(req.queries, f)
        if not f.dtype.is_sparse and "drop_ratio_search" in req.params:
            raise InvalidArgument(
                f"search param drop_ratio_search is for sparse vector fields, not {f.dtype.name}"
            )
        metric = resolve_metric(info, field_name, req.metric)
        flt = self._filter(info, req.filter, req.filter_params)
        sources = scalar_sources(info.schema, info.indexes) if flt is not None else frozenset()
        requested = check_partitions(info, req.partitions, flt)
        cols, _dyn = output_columns(info.schema, req.output_fields)

        def run(snapshot: Snapshot) -> list[Hits]:
            partitions = without_dropped(info, requested, snapshot)
            snapshot = in_shards(snapshot, req.shards)
            view = [
                (c, with_vectors(c, container_mask(c, alive, flt, partitions, sources), f))
                for c, alive in snapshot
                if not (req.ignore_growing and not c.sealed) and not pruned(c, partitions)
            ]
            everything = list(snapshot) if f.dtype.is_sparse and metric == "BM25" else []
            coll.scanned_rows += sum(c.num_rows for c, _ in view)
            interim = coll.interim.lookup(field_name)

            def neighbours(view: View, q: np.ndarray, kk: int) -> Neighbours:
                if f.dtype.is_sparse:
                    return sparse_knn(
                        view, everything, info, field_name, q, kk, metric, req.params, req.bm25_stats
                    )
                if "radius" in req.params:
                    return range_knn(view, info.schema, field_name, q, kk, metric, req.params)
                ef = self._interim.ef_search
                return knn(view, info.schema, field_name, q, kk, metric, req.params, interim, ef)

            if req.group_by_field:
                return grouped_hits(view, info, queries, req, cols, neighbours)
            d, refs, used = neighbours(view, queries, k)
            return split_hits(info, used, d[:, req.offset :], refs[:, req.offset :], cols, req.round_decimal)

        return self.barrier.read(coll, req.consistency, run), served, metric

    def bm25_counts(self, req: SearchRequest) -> list[tuple[int, float, list[float]]]:
        """BM25 statistics of ``req``'s queries over the live rows of the shards held here (a
        gateway sums them over every shard, then searches with the sums)."""
        coll = self._collection(req.collection, req.collection_id)
        field_name = req.anns_field or only_vector_field(coll.info)
        idx = coll.info.indexes.get(field_name)
        drop_build = float((idx.params if idx else {}).get("drop_ratio_build", 0.0) or 0.0)
        ratio = drop_ratio_search(req.params, InvalidArgument)
        qs = [drop_small(q, ratio) for q in req.queries.items]  # type: ignore[attr-defined]

        def run(snapshot: Snapshot) -> list[tuple[int, float, list[float]]]:
            counts = bm25_counts(in_shards(snapshot, req.shards), field_name, drop_build, qs)
            return [(n, total, df.tolist()) for n, total, df in counts]

        return self.barrier.read(coll, req.consistency, run)

    # query -------------------------------------------------------------------------------------------
    def query(self, req: QueryRequest) -> pa.Table:
        return self.served_query(req)[0]

    def served_query(self, req: QueryRequest) -> tuple[pa.Table, frozenset[int]]:
        """``query`` and the shards it read (those of ``req.shards`` held here)."""
        coll = self._collection(req.collection, req.collection_id)
        info = coll.info
        served = _served(coll, req.shards)
        flt = self._filter(info, req.filter, req.filter_params)
        sources = scalar_sources(info.schema, info.indexes) if flt is not None else frozenset()
        requested = check_partitions(info, req.partitions, flt)
        grouping = bool(req.group_by_fields or req.aggregates)
        wants_count = COUNT in req.output_fields and not grouping
        aggregated = [a.field for a in req.aggregates if a.field is not None]
        cols, _dyn = output_columns(info.schema, [*req.output_fields, *req.group_by_fields, *aggregated])
        ids = req.ids
        pk = info.schema.primary.name
        if ids is None and flt is not None:
            vals = flt.values_for(pk)
            if vals is not None and len(vals) <= 100_000:
                ids = list(vals)

        def run(snapshot: Snapshot) -> tuple[Any, int]:
            partitions = without_dropped(info, requested, snapshot)
            view = [
                (c, a)
                for c, a in in_shards(snapshot, req.shards)
                if not (req.ignore_growing and not c.sealed) and not pruned(c, partitions)
            ]
            limit, offset = (None, 0) if grouping else (req.limit, req.offset)  # grouping pages groups
            return query_rows(view, pk, flt, ids, partitions, cols, limit, offset, wants_count, sources)

        result, scanned = self.barrier.read(coll, req.consistency, run)
        coll.scanned_rows += scanned
        if wants_count:
            return pa.table({COUNT: pa.array([result], pa.int64())}), served
        assert isinstance(result, pa.Table)
        if result.num_columns == 0:
            result = empty_table(info, list(dict.fromkeys([pk, *cols])))
        if grouping:
            out = aggregate(result, req.group_by_fields, req.aggregates)
            out = out.slice(req.offset, req.limit) if req.limit is not None else out.slice(req.offset)
            return out, served
        return result, served

    def stats(self, collection: str) -> dict[str, Any]:
        return self.stats_of(self.catalog.require(collection))

    def stats_of(self, info: CollectionInfo) -> dict[str, Any]:
        coll = self._loaded.get(info.collection_id)
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

    def _filter(self, info: CollectionInfo, expr: str, params: dict[str, Any]) -> CompiledFilter | None:
        return compiled_filter(info, expr, params)


def _served(coll: LoadedCollection, shards: frozenset[int] | None) -> frozenset[int]:
    held = frozenset(coll.shards)
    return held if shards is None else held & shards


def in_shards(snapshot: Snapshot, shards: frozenset[int] | None) -> Snapshot:
    return snapshot if shards is None else [(c, a) for c, a in snapshot if c.shard in shards]


__all__ = ["SearcherService", "in_shards"]
