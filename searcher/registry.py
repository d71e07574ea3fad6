"""Which collections a searcher holds, and which of their shards: loading, reloading, dropping.

The registry follows the catalog (a collection loaded anywhere is loaded here), and in a
``walvus searcher`` process the shard assignment of its consumer group (``searcher.ownership``):
it loads a copy of each collection that holds exactly the shards assigned, and loads it again
when the group moves shards. The WAL tail hands it records (``apply``) and positions
(``advance``) for the collections it holds.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.exceptions import CollectionNotLoaded, PartitionNotFound
from schemas.topics import wal_topic
from schemas.wal import WalRecord
from searcher.collection import LoadedCollection
from searcher.index_attach import IndexAttacher
from searcher.metrics import ConsumedGauge
from searcher.ownership import Assignment
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.settings import SearcherSettings
from walvus.storage import SegmentStore

log = logging.getLogger(__name__)
ASSIGNMENT_SETTLE_SECONDS = 3.0  # a heartbeat (1 s) plus a rebalance of the group


def release_memory() -> None:
    """Hand memory freed by a dropped copy back to the system (Arrow's pool, then glibc's
    malloc, which FAISS uses), so a searcher that gave shards away is seen to shrink."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Registry:
    def __init__(
        self,
        catalog: Any,
        store: SegmentStore,
        namespace: str,
        settings: SearcherSettings,
        on_growing: Callable[[], None] = lambda: None,
        clock: Clock = SYSTEM_CLOCK,
        attacher: IndexAttacher | None = None,
    ) -> None:
        """``attacher``: retries the index attaches that fail (``searcher.index_attach``)."""
        self.catalog = catalog
        self.attacher = attacher
        self.clock = clock  # handed to each loaded collection: TTL expiry reads its wall time
        self.store = store
        self.ns = namespace
        self.settings = settings
        self._interim = settings.interim()
        self._on_growing = on_growing
        self.tail: Any = None  # the WAL tail (``searcher.tail.WalTail``), set by the service
        self._loaded: dict[int, LoadedCollection] = {}  # by collection id
        self._by_topic: dict[str, LoadedCollection] = {}
        self._loading: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._consumed = ConsumedGauge()
        # a ``walvus searcher`` holds the shards its consumer group assigns (topic -> shards);
        # None: every shard of every loaded collection (the searcher inside the gateway)
        self._assignment: Assignment | None = None
        self._pending_assignment: Assignment | None = None
        self._settle: threading.Timer | None = None
        self._ownership: Any = None
        self.replica_group = 0

    def loaded(self) -> list[LoadedCollection]:
        return list(self._loaded.values())

    def get(self, collection_id: int) -> LoadedCollection | None:
        return self._loaded.get(collection_id)

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
        """The group moved shards: once it has been still for ``ASSIGNMENT_SETTLE_SECONDS``, load
        the copies that change and drop the ones left with none. (Searchers join a group one
        after another: without the wait the first would load every shard, then give half away.)"""
        with self._lock:
            self._pending_assignment = assignment
            if self._settle is not None:
                self._settle.cancel()
            self._settle = threading.Timer(ASSIGNMENT_SETTLE_SECONDS, self._settled)
            self._settle.daemon = True
            self._settle.start()

    def _settled(self) -> None:
        with self._lock:
            assignment, self._settle = self._pending_assignment, None
        if assignment is None:
            return
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
                self.drop(info.collection_id)
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
            clock=self.clock,
            attacher=self.attacher,
        )
        try:
            starts = coll.load()
        except Exception:
            log.exception("loading failed collection=%s", info.name)
            with self._lock:
                self._loading.pop(info.collection_id, None)
            return
        with self._lock:
            earlier = self._loaded.get(info.collection_id)
            self._loaded[info.collection_id] = coll
            self._by_topic[topic] = coll
            self._loading.pop(info.collection_id, None)
        self.tail.unassign(topic)  # the shards an earlier copy held
        self.tail.assign(topic, starts)
        if earlier is not None:
            earlier.released = True  # its queued index attaches end
        del earlier
        release_memory()  # what reading the copy (and the copy it replaces) took and let go
        log.info(
            "loaded collection=%s rows=%s shards=%s",
            info.name,
            sum(c.num_rows for c in coll.containers),
            sorted(coll.shards),
        )
        if self._assignment is not None and self._serves(info):
            self._rebalance(info)  # the group may have moved shards while this copy was read

    def reload(self, topic: str) -> None:
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
        self.tail.unassign(topic)
        t.start()

    def release(self, collection: str, partitions: list[str] | None = None) -> None:
        info = self.catalog.require(collection)
        if partitions:
            return  # partitions of a loaded collection stay in memory; the catalog records the state
        self.drop(info.collection_id)

    def drop(self, collection_id: int) -> None:
        topic = wal_topic(self.ns, collection_id)
        self.tail.unassign(topic)
        with self._lock:
            coll = self._loaded.pop(collection_id, None)
            self._by_topic.pop(topic, None)
        if coll is not None:
            coll.released = True  # its queued index attaches end
            self._consumed.forget(coll.info.qualified)
            del coll
            release_memory()

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

    def apply(self, topic: str, shard: int, offset: int, record: WalRecord) -> None:
        coll = self._by_topic.get(topic)
        if coll is not None:
            coll.apply(shard, offset, record)
            if coll.interim.fields:
                self._on_growing()

    def advance(self, topic: str, shard: int, offset: int) -> None:
        coll = self._by_topic.get(topic)
        if coll is not None:
            coll.mark_applied(shard, offset)
            self._consumed.set(coll.info.qualified, shard, offset)

    def on_catalog(self, info: CollectionInfo) -> None:
        if self._ownership is not None:
            self._ownership.follow(self._followed_topics())
            if not self._serves(info):
                self.drop(info.collection_id)
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
            self.drop(info.collection_id)
        else:
            if coll.info.qualified != info.qualified:  # renamed: the gauge follows the new name
                self._consumed.forget(coll.info.qualified)
            coll.update_info(info)

    def collection(self, name: str, collection_id: int = 0) -> LoadedCollection:
        """By the id the gateway resolved when it has one: a rename or an alias switch between
        the gateway's lookup and this one cannot make the request miss or change collection."""
        cid = collection_id or self.catalog.require(name).collection_id
        coll = self._loaded.get(cid)
        if coll is None:
            raise CollectionNotLoaded(name)
        return coll


__all__ = ["Registry"]
