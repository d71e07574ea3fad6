"""The Python write API that the gateway and tools share: DDL on the catalog, DML on the WAL.

w = Walvus.connect("127.0.0.1:9092")
w.create_collection("docs", schema)
w.insert("docs", [{"id": 1, "vec": [...]}])
w.flush(["docs"])   # returns once every write so far is sealed and committed to Delta
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.catalog import DEFAULT_PARTITION, RENAMED, CatalogEvent, CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema, check_name, validate_schema
from schemas.exceptions import (
    AliasInUse,
    AliasNameConflict,
    CapacityExceeded,
    CollectionExists,
    DatabaseNotFound,
    InvalidArgument,
    LimitExceeded,
    PartitionNotFound,
    RequestTooLarge,
)
from schemas.live import stored_alive
from schemas.segments import CompactionRequested
from schemas.stored_rows import key_partition_names
from schemas.timestamps import HybridClock
from schemas.topics import segments_topic, wal_topic
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import Op
from walvus.aliases import AliasDdl
from walvus.catalog import Catalog
from walvus.databases import DatabaseDdl, current_db, using_db
from walvus.exceptions import FlushTimeout
from walvus.log import KafkaLog, LogMessage
from walvus.partitions import DEFAULT_NUM_PARTITIONS, assign_partitions
from walvus.settings import KafkaSettings, LimitSettings, StorageSettings, WalvusSettings
from walvus.snapshots import SnapshotBook
from walvus.storage import DELETES, ROWS, SegmentStore
from walvus.wal_writer import control_messages, flush_messages, shard_messages

log = logging.getLogger(__name__)
Rows = Sequence[Mapping[str, Any]]


@dataclass
class WriteResult:
    """What Milvus's MutationResult carries: keys, timestamp, and where the write landed."""

    ids: list[Any]
    ts: int
    positions: dict[int, int] = field(default_factory=dict)  # shard -> offset of the last record
    collection_id: int = 0
    nbytes: int = 0  # bytes of the records appended to the WAL (reported as Milvus's ``cost``)


class Walvus:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Catalog,
        store: SegmentStore,
        *,
        namespace: str,
        site: str,
        limits: LimitSettings | None = None,
        snapshots: SnapshotBook | None = None,
    ) -> None:
        self.kafka = kafka
        self.snapshots = snapshots  # snapshot records and restore jobs (walvus.snapshots)
        self.catalog = catalog
        self.store = store
        self.ns = namespace
        self.site = site
        self.limits = limits or LimitSettings()
        self.clock = HybridClock()
        self.databases = DatabaseDdl(self)
        self.aliases = AliasDdl(self)

    @classmethod
    def connect(cls, bootstrap: str) -> Walvus:
        base = WalvusSettings()
        kafka = KafkaLog(KafkaSettings().client_config(bootstrap))
        storage = StorageSettings()
        catalog = Catalog(kafka, base.namespace).start()
        return cls(
            kafka,
            catalog,
            storage.store(),
            namespace=base.namespace,
            site=base.site,
            snapshots=SnapshotBook(kafka, base.namespace).start(),
        )

    def close(self) -> None:
        if self.snapshots is not None:
            self.snapshots.stop()
        self.catalog.stop()
        self.kafka.close()

    # DDL -------------------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        schema: CollectionSchema,
        *,
        shards_num: int = 1,
        num_partitions: int | None = None,
        consistency_level: int = 2,
        properties: Mapping[str, str] | None = None,
    ) -> CollectionInfo:
        check_name("collection", name)
        db = current_db()
        if self.catalog.database(db) is None:
            raise DatabaseNotFound(db)
        if self.catalog.get_collection(name) is not None:
            raise CollectionExists(name)
        if self.catalog.alias(name) is not None:
            raise AliasNameConflict(
                f"collection name [{name}] conflicts with an existing alias, please choose a unique name",
                collection=name,
            )
        if not 1 <= shards_num <= 16:
            raise InvalidArgument(f"shards_num must be between 1 and 16, got {shards_num}")
        schema = validate_schema(schema, max_dim=self.limits.max_dim)
        partitions = {DEFAULT_PARTITION: 0}
        nparts = 0
        if schema.partition_key is not None:
            nparts = num_partitions or DEFAULT_NUM_PARTITIONS
            if not 1 <= nparts <= 1024:
                raise InvalidArgument(f"num_partitions must be between 1 and 1024, got {nparts}")
            partitions = key_partition_names(nparts)
        used = sum(c.shards_num * len(c.partitions) for c in self.catalog.collections())
        if used + shards_num * len(partitions) > self.limits.max_collections:
            raise CapacityExceeded(
                f"general capacity exceeded: over the limit of {self.limits.max_collections} collections (shards x partitions count "
                f"towards it: {used} used)"
            )
        cid = self.clock.now()
        info = CollectionInfo(
            name=name,
            collection_id=cid,
            schema=schema,
            shards_num=shards_num,
            partitions=partitions,
            num_partitions=nparts,
            consistency_level=consistency_level,
            properties=dict(properties or {}),
            created_ts=cid,
            origin=self.site,
            db_name=db,
        )
        self.kafka.ensure_topic(wal_topic(self.ns, cid), shards_num, config=wal_topic_config())
        return self.catalog.publish(info)

    def droppable(self, name: str) -> CollectionInfo | None:
        """The collection ``drop_collection(name)`` would drop; None when there is none (Milvus:
        dropping a missing collection succeeds). An alias, or a collection with aliases, is refused."""
        info = self.catalog.get_collection(name)
        if info is None:
            if self.catalog.alias(name) is not None:
                raise AliasInUse(f"cannot drop the collection via alias = {name}", alias=name)
            check_name("collection", name)
            return None
        aliases = self.catalog.aliases(info.collection_id)
        if aliases:
            raise AliasInUse(
                f"unable to drop the collection [{name}] because it has associated aliases {aliases}, "
                "please remove all aliases before dropping the collection",
                collection=name,
            )
        return info

    def drop_collection(self, name: str) -> None:
        info = self.droppable(name) or self.catalog.require(name)
        self.publish(info.evolve(CatalogEvent.DROP_COLLECTION, state="dropped", dropped_ts=self.clock.now()))

    def create_partition(self, name: str, partition: str) -> CollectionInfo:
        info = self.catalog.require(name)
        check_name("partition", partition)
        if info.schema.partition_key is not None:
            raise InvalidArgument("cannot create partitions in a collection with a partition key")
        if partition in info.partitions:
            raise InvalidArgument(f"partition already exists[partition={partition}]")
        if len(info.partitions) >= 1024:
            raise LimitExceeded("a collection can have at most 1024 partitions")
        pid = max(info.last_partition_id, *info.partitions.values()) + 1
        parts = {**info.partitions, partition: pid}
        return self.publish(
            info.evolve(CatalogEvent.CREATE_PARTITION, partitions=parts, last_partition_id=pid)
        )

    def drop_partition(self, name: str, partition: str) -> CollectionInfo:
        info = self.catalog.require(name)
        if partition not in info.partitions:
            raise PartitionNotFound(name, partition)
        if partition == DEFAULT_PARTITION:
            raise InvalidArgument("the default partition cannot be dropped")
        if partition in info.loaded_partitions:
            raise InvalidArgument(f"partition {partition} is loaded: release it before dropping it")
        # first a marker in every shard of the WAL: rows of the partition written before it are
        # gone, in the searchers (which apply it in order) and in Delta (a partition tombstone),
        # so a partition created later under the same name starts empty
        ts = self.clock.now()
        self.kafka.append(
            control_messages(self.ns, info, Op.DROP_PARTITION, ts=ts, origin=self.site, partition=partition)
        )
        parts = {k: v for k, v in info.partitions.items() if k != partition}
        return self.publish(info.evolve(CatalogEvent.DROP_PARTITION, partitions=parts))

    def add_field(self, name: str, new: FieldSchema) -> CollectionInfo:
        info = self.catalog.require(name)
        return self.publish(info.evolve(CatalogEvent.ADD_FIELD, schema=info.schema.with_field(new)))

    def drop_field(self, name: str, field_name: str) -> CollectionInfo:
        info = self.catalog.require(name)
        schema = info.schema.without_field(field_name)
        indexes = {f: i for f, i in info.indexes.items() if f != field_name}
        return self.publish(info.evolve(CatalogEvent.DROP_FIELD, schema=schema, indexes=indexes))

    def publish(self, info: CollectionInfo) -> CollectionInfo:
        return self.catalog.publish(replace(info, origin=self.site))

    def rename_collection(self, old: str, new: str, new_db: str = "") -> CollectionInfo:
        """Give a collection a new name, in its database or in ``new_db``: metadata only (its
        topic and tables are named by id, unique across databases).

        The state under the new name is written first, then the old name's ``renamed`` record:
        a reader resolves the collection under the old name, then under both, then under the new
        one, never under neither. Aliases point at the id, so they follow.
        """
        info = self.catalog.get_collection(old)
        if info is None:
            if self.catalog.alias(old) is not None:
                raise InvalidArgument(
                    f"unsupported use an alias to rename collection, alias:{old}", alias=old
                )
            info = self.catalog.require(old)
        check_name("collection", new)
        target_db = new_db or info.db_name
        if self.catalog.database(target_db) is None:
            raise DatabaseNotFound(target_db)
        if new == old and target_db == info.db_name:
            raise InvalidArgument(f"collection name or database name should be different, got {old!r} twice")
        with using_db(target_db):
            taken = self.catalog.get_collection(new) is not None or self.catalog.alias(new) is not None
        if taken:
            raise InvalidArgument(
                f"duplicated new collection name {target_db}:{new} with other collection name or alias",
                collection=new,
            )
        if target_db != info.db_name and self.catalog.aliases(info.collection_id):
            raise InvalidArgument(
                f"fail to rename collection {old}: must drop all aliases of this collection before "
                f"moving it to another database",
                collection=old,
            )
        renamed = replace(info.evolve(CatalogEvent.RENAME, name=new, db_name=target_db), origin=self.site)
        gone = replace(info.evolve(CatalogEvent.RENAME, state=RENAMED), origin=self.site)
        self.catalog.publish_records([renamed, gone])
        return renamed

    # DML -------------------------------------------------------------------------------------
    def insert(self, name: str, data: Rows | Mapping[str, Any], partition: str | None = None) -> WriteResult:
        return self._write(name, Op.INSERT, data, partition)

    def upsert(self, name: str, data: Rows | Mapping[str, Any], partition: str | None = None) -> WriteResult:
        return self._write(name, Op.UPSERT, data, partition)

    def _write(self, name: str, op: Op, data: Rows | Mapping[str, Any], partition: str | None) -> WriteResult:
        info = self.catalog.require(name)
        columns = data if isinstance(data, Mapping) else rows_to_columns(info.schema, data)
        n = _num_rows(columns)
        auto = None
        ts = self.clock.now()
        if info.schema.primary.auto_id and op == Op.INSERT:
            auto = self.clock.now(n) + np.arange(n, dtype=np.int64)
        batch = build_batch(info.schema, columns, op=str(op), auto_ids=auto)
        self._check_size(batch.nbytes)
        batch = assign_partitions(info, batch, partition)
        msgs = shard_messages(self.ns, info, op, batch, ts=ts, origin=self.site, partition=partition)
        return self._append(info, msgs, batch.column(info.schema.primary.name), ts)

    def delete(self, name: str, ids: Sequence[Any] | pa.Array, partition: str | None = None) -> WriteResult:
        info = self.catalog.require(name)
        if partition is not None and partition not in info.partitions:
            raise PartitionNotFound(name, partition)
        pk = replace(info.schema.primary, auto_id=False)
        keys = ids if isinstance(ids, pa.Array) else pa.array(list(ids)) if len(ids) else None
        if keys is None:
            return WriteResult([], self.clock.now(), {}, info.collection_id)
        batch = build_batch(CollectionSchema(fields=(pk,)), {pk.name: keys}, op="insert")
        ts = self.clock.now()
        msgs = shard_messages(self.ns, info, Op.DELETE, batch, ts=ts, origin=self.site, partition=partition)
        return self._append(info, msgs, batch.column(0), ts)

    def _append(self, info: CollectionInfo, msgs: list, keys: pa.Array, ts: int) -> WriteResult:
        offsets = self.kafka.append(msgs)
        positions = {m.partition: off for m, off in zip(msgs, offsets, strict=True)}
        nbytes = sum(len(m.value or b"") for m in msgs)
        return WriteResult(keys.to_pylist(), ts, positions, info.collection_id, nbytes)

    def _check_size(self, nbytes: int) -> None:
        limit = int(self.limits.max_request_mb * 1024 * 1024)
        if nbytes > limit:
            raise RequestTooLarge(
                f"request of {nbytes / 2**20:.1f} MB is over the limit of {self.limits.max_request_mb} MB; "
                "split it into smaller batches"
            )

    def flush(self, names: Sequence[str], timeout: float = 120.0) -> dict[str, dict[int, int]]:
        """Seal and commit everything written so far to these collections. Returns shard -> offset."""
        flush_id = uuid.uuid4().hex
        waits: dict[str, tuple[CollectionInfo, dict[int, int]]] = {}
        for name in names:
            info = self.catalog.require(name)
            msgs = flush_messages(self.ns, info, ts=self.clock.now(), origin=self.site, flush_id=flush_id)
            offsets = self.kafka.append(msgs)
            waits[name] = (info, {m.partition: o for m, o in zip(msgs, offsets, strict=True)})
        deadline = time.monotonic() + timeout
        for name, (info, positions) in waits.items():
            for shard, offset in positions.items():
                while not self.flushed(info.collection_id, shard, offset):
                    if time.monotonic() > deadline:
                        raise FlushTimeout(
                            f"flush of {name} did not finish in {timeout}s: is `walvus streams` running?",
                            collection=name,
                            shard=shard,
                        )
                    time.sleep(0.02)
        return {name: pos for name, (_, pos) in waits.items()}

    def request_compaction(self, name: str, target_size_mb: int = 0) -> int:
        """Ask the compactor (in the indexer) to compact the collection now, into segments of at most
        ``target_size_mb`` MB when given; returns the compaction id.

        The request goes on the segments topic; the compactor answers there with ``SegmentsCompacted``."""
        info = self.catalog.require(name)
        compaction_id = self.clock.now()
        req = CompactionRequested(info.collection_id, info.name, compaction_id, int(target_size_mb))
        topic = segments_topic(self.ns)
        self.kafka.ensure_topic(topic, 1)
        self.kafka.append([LogMessage(topic, 0, req.to_json())])
        return compaction_id

    def persisted_rows(self, name: str, partition: str | None = None) -> int:
        """Live rows committed to Delta (sealed segments minus deletes), without loading anything.

        What Milvus's collection statistics count for a released collection; rows still in the
        unsealed WAL tail are not counted until a flush (or the seal policy) commits them.
        """
        info = self.catalog.require(name)
        pk = info.schema.primary.name
        keep = [pk, "_seq", "_partition", "_shard"]
        # the deletes table first: compaction purges tombstones only after the rows they hid
        tombs = self.store.read(info.collection_id, DELETES, columns=["_pk", *keep[1:]])
        rows = self.store.read(info.collection_id, ROWS, columns=keep)
        if rows is None or rows.num_rows == 0:
            return 0
        alive = stored_alive(rows, tombs, pk)
        if partition is not None:
            alive &= rows.column("_partition").to_numpy(zero_copy_only=False) == partition
        return int(alive.sum())

    def flushed(self, collection_id: int, shard: int, offset: int) -> bool:
        return all(
            self.store.committed_offset(collection_id, kind, shard) >= offset for kind in (ROWS, DELETES)
        )


def _num_rows(columns: Mapping[str, Any]) -> int:
    return max((len(v) for v in columns.values() if v is not None), default=0)


def wal_topic_config() -> dict[str, str]:
    """A WAL partition rolls a log segment at least every WAL retention (1 min to 1 hour): Kafka frees
    disk only by deleting closed segments, so without this a slow collection's truncated WAL kept its
    bytes until 64 MB were written (soak bench)."""
    from walvus.settings import GcSettings

    seconds = min(3600.0, max(60.0, GcSettings().gc_wal_retention_seconds))
    return {"segment.ms": str(int(seconds * 1000))}
