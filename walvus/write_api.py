"""The write API as the gateway sees it: what it may call on ``walvus.api.Walvus``, declared.

``WriteApi`` is a structural type: ``Walvus`` satisfies it without naming it, and so does any
stand-in with the same members (``tests.memory.memory_walvus`` builds the real one over memory
fakes). The gateway, the snapshot book and the restore runner are typed against it, so a member
they start using must be added here first, where a reader sees the whole surface at once.

This module imports nothing at run time but ``typing``: the types it names are read by type
checkers only, so importing it costs nothing (``walvus.api`` pulls in numpy, pyarrow and the
Kafka client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from schemas.catalog import CollectionInfo
    from schemas.collection import CollectionSchema, FieldSchema
    from schemas.timestamps import HybridClock
    from walvus.aliases import AliasDdl
    from walvus.api import WriteResult
    from walvus.catalog import Catalog
    from walvus.databases import DatabaseDdl
    from walvus.log import KafkaLog
    from walvus.settings import LimitSettings
    from walvus.snapshots import SnapshotBook
    from walvus.storage import SegmentStore

Rows = Sequence[Mapping[str, Any]]


@runtime_checkable
class WriteApi(Protocol):
    """DDL on the catalog and DML on the WAL, as ``walvus.api.Walvus`` offers them."""

    catalog: Catalog  # collections, aliases, databases and users, as published
    store: SegmentStore  # sealed segments (persisted row counts, index progress)
    kafka: KafkaLog  # the log, for its client configuration
    ns: str  # the deployment's namespace: topic and group names start with it
    limits: LimitSettings
    clock: HybridClock  # the timestamps writes and DDL carry
    databases: DatabaseDdl
    aliases: AliasDdl
    snapshots: SnapshotBook | None  # None where snapshots are not served

    def close(self) -> None: ...

    # DDL
    def create_collection(
        self,
        name: str,
        schema: CollectionSchema,
        *,
        shards_num: int = 1,
        num_partitions: int | None = None,
        consistency_level: int = 2,
        properties: Mapping[str, str] | None = None,
    ) -> CollectionInfo: ...

    def droppable(self, name: str) -> CollectionInfo | None: ...

    def drop_collection(self, name: str) -> None: ...

    def create_partition(self, name: str, partition: str) -> CollectionInfo: ...

    def drop_partition(self, name: str, partition: str) -> CollectionInfo: ...

    def add_field(self, name: str, new: FieldSchema) -> CollectionInfo: ...

    def drop_field(self, name: str, field_name: str) -> CollectionInfo: ...

    def publish(self, info: CollectionInfo) -> CollectionInfo: ...

    def rename_collection(self, old: str, new: str, new_db: str = "") -> CollectionInfo: ...

    # DML
    def insert(
        self, name: str, data: Rows | Mapping[str, Any], partition: str | None = None
    ) -> WriteResult: ...

    def upsert(
        self, name: str, data: Rows | Mapping[str, Any], partition: str | None = None
    ) -> WriteResult: ...

    def delete(
        self, name: str, ids: Sequence[Any] | pa.Array, partition: str | None = None
    ) -> WriteResult: ...

    def flush(self, names: Sequence[str], timeout: float = 120.0) -> dict[str, dict[int, int]]: ...

    def request_compaction(self, name: str, target_size_mb: int = 0) -> int: ...

    def persisted_rows(self, name: str, partition: str | None = None) -> int: ...
