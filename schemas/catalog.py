"""Catalog state: what the compacted catalog topic holds, one record per collection or alias.

A collection's key is its name; the value is the collection's whole current state as
JSON (``CollectionInfo``), with the event that produced it. Compaction keeps the latest
state per key, so replaying the topic rebuilds the catalog after any restart.
A dropped collection keeps a record with ``state = "dropped"`` until its retention ends.
A renamed collection's old name keeps a record with ``state = "renamed"`` (written after the
state under the new name), which readers skip: the name is free again.

An alias's key is ``alias:<name>`` (collection names cannot hold ``:``); the value is an
``AliasInfo`` naming the collection by id, so a rename keeps its aliases. A dropped alias keeps
a record with ``state = "dropped"`` (a value, not a tombstone, so CDC can tell where it came from).

Databases: a collection or alias of the ``default`` database is keyed by its bare name (where
walvus kept them before databases existed); one of database ``db`` by ``db/name`` (names cannot
hold ``/``). A database's own record is keyed ``db:<name>`` (``DatabaseInfo``). WAL topics and
Delta tables are named by collection id, which is unique across databases, so databases share
one Kafka cluster and one storage root without meeting.

Users, roles, role members, grants and privilege groups have keys of their own (``user:``,
``role:``, ``member:``, ``grant:``, ``privgroup:``; see ``schemas.rbac``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.collection import CollectionSchema
from schemas.rbac import RbacRecord, decode_rbac, is_rbac_key
from schemas.resource_groups import ResourceGroupRecord, decode_resource_group, is_resource_group_key

DEFAULT_PARTITION = "_default"


class CatalogEvent:
    CREATE_COLLECTION = "create_collection"
    DROP_COLLECTION = "drop_collection"
    CREATE_PARTITION = "create_partition"
    DROP_PARTITION = "drop_partition"
    CREATE_INDEX = "create_index"
    DROP_INDEX = "drop_index"
    LOAD = "load"
    RELEASE = "release"
    ALTER = "alter_properties"
    ADD_FIELD = "add_field"
    ALTER_FIELD = "alter_field"
    ALTER_INDEX = "alter_index"
    DROP_FIELD = "drop_field"
    RENAME = "rename_collection"
    CREATE_ALIAS = "create_alias"
    ALTER_ALIAS = "alter_alias"
    DROP_ALIAS = "drop_alias"


ACTIVE, DROPPED, RENAMED = "active", "dropped", "renamed"
ALIAS_KEY_PREFIX = "alias:"
DATABASE_KEY_PREFIX = "db:"
DEFAULT_DB = "default"
DEFAULT_DB_ID = 1


def qualify(db_name: str, name: str) -> str:
    """The catalog key of a collection or alias ``name`` of database ``db_name``."""
    return name if db_name in ("", DEFAULT_DB) else f"{db_name}/{name}"


def split_qualified(key: str) -> tuple[str, str]:
    """``(database, name)`` of a key made by ``qualify``."""
    db, sep, name = key.rpartition("/")
    return (db, name) if sep else (DEFAULT_DB, key)


TTL_PROPERTY = "collection.ttl.seconds"  # rows older than this stop being returned (0: never)


@dataclass(frozen=True)
class IndexInfo:
    field: str
    index_name: str
    index_type: str
    metric_type: str
    params: dict[str, Any] = field(default_factory=dict)
    index_id: int = 0
    created_ts: int = 0
    properties: dict[str, str] = field(default_factory=dict)  # alter_index_properties: mmap.enabled

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    collection_id: int
    schema: CollectionSchema
    shards_num: int = 1
    partitions: dict[str, int] = field(default_factory=lambda: {DEFAULT_PARTITION: 0})
    num_partitions: int = 0  # with a partition key: the number of hidden partitions
    last_partition_id: int = 0  # ids are never reused, also after a drop
    indexes: dict[str, IndexInfo] = field(default_factory=dict)  # by field name
    loaded: bool = False
    loaded_partitions: tuple[str, ...] = ()
    replica_number: int = 1  # replica groups of ``walvus searcher`` processes that hold it when loaded
    properties: dict[str, str] = field(default_factory=dict)
    consistency_level: int = 2  # Milvus: 0 Strong, 1 Session, 2 Bounded, 3 Eventually
    created_ts: int = 0
    state: str = "active"
    dropped_ts: int = 0
    event: str = CatalogEvent.CREATE_COLLECTION
    origin: str = ""  # the site that made the last change (CDC loop prevention)
    db_name: str = DEFAULT_DB

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def qualified(self) -> str:
        """The collection's catalog key: its name, prefixed by its database outside ``default``."""
        return qualify(self.db_name, self.name)

    @property
    def ttl_seconds(self) -> int:
        """The collection's time to live (``collection.ttl.seconds``); 0 when rows never expire."""
        try:
            return max(0, int(self.properties.get(TTL_PROPERTY, 0)))
        except ValueError:
            return 0

    def evolve(self, event: str, **changes: Any) -> CollectionInfo:
        return replace(self, event=event, **changes)

    def to_json(self) -> bytes:
        d = {k: v for k, v in self.__dict__.items() if k not in ("schema", "indexes")}
        d["schema"] = self.schema.to_dict()
        d["indexes"] = {k: v.to_dict() for k, v in self.indexes.items()}
        d["loaded_partitions"] = list(self.loaded_partitions)
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CollectionInfo:
        d = json.loads(raw)
        d["schema"] = CollectionSchema.from_dict(d["schema"])
        d["indexes"] = {k: IndexInfo(**v) for k, v in d.get("indexes", {}).items()}
        d["loaded_partitions"] = tuple(d.get("loaded_partitions", ()))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class AliasInfo:
    """One alias: another name for the collection with ``collection_id``."""

    alias: str
    collection_id: int
    collection: str = ""  # the collection's name when the alias was written (for people and CDC)
    state: str = ACTIVE
    event: str = CatalogEvent.CREATE_ALIAS
    created_ts: int = 0
    origin: str = ""
    db_name: str = DEFAULT_DB

    kind = "alias"

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @property
    def key(self) -> str:
        return alias_key(qualify(self.db_name, self.alias))

    def to_json(self) -> bytes:
        return json.dumps(
            {**self.__dict__, "kind": self.kind}, separators=(",", ":"), sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> AliasInfo:
        d = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class DatabaseInfo:
    """A database: a namespace of collections and aliases, with properties."""

    name: str
    db_id: int
    properties: dict[str, str] = field(default_factory=dict)
    state: str = ACTIVE
    event: str = "create_database"
    created_ts: int = 0
    origin: str = ""

    kind = "database"

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @property
    def key(self) -> str:
        return DATABASE_KEY_PREFIX + self.name

    def to_json(self) -> bytes:
        return json.dumps(
            {**self.__dict__, "kind": self.kind}, separators=(",", ":"), sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DatabaseInfo:
        d = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


CatalogRecord = CollectionInfo | AliasInfo | DatabaseInfo | RbacRecord | ResourceGroupRecord


def alias_key(qualified_alias: str) -> str:
    return ALIAS_KEY_PREFIX + qualified_alias


def is_alias_key(key: str) -> bool:
    return key.startswith(ALIAS_KEY_PREFIX)


def is_database_key(key: str) -> bool:
    return key.startswith(DATABASE_KEY_PREFIX)


def is_collection_key(key: str) -> bool:
    return not (is_alias_key(key) or is_database_key(key) or is_rbac_key(key) or is_resource_group_key(key))


def record_key(record: CatalogRecord) -> str:
    """The catalog topic key a record is written under."""
    return record.qualified if isinstance(record, CollectionInfo) else record.key


def decode_record(key: str, raw: bytes) -> CatalogRecord:
    """A catalog topic value, by its key: an alias, a database, an access-control record
    (``schemas.rbac``), a resource-group record (``schemas.resource_groups``) or a collection state."""
    if is_rbac_key(key):
        return decode_rbac(key, raw)
    if is_resource_group_key(key):
        return decode_resource_group(key, raw)
    if is_alias_key(key):
        return AliasInfo.from_json(raw)
    if is_database_key(key):
        return DatabaseInfo.from_json(raw)
    return CollectionInfo.from_json(raw)
