"""What happens to each source record: where it goes on the target, rewritten or not, or nowhere.

Pure functions of the task spec and the record, so the rules are unit-tested without Kafka:

- A record whose origin is the target site is never sent (loop prevention).
- A record with an empty origin gets the source site as its origin.
- Collection names are mapped (catalog key, ``CollectionInfo.name``, ``WalHeader.collection``,
  an alias's ``collection``); collection ids, partitions (shards) and the order within a
  partition are kept.
- Users, roles, role members, grants and privilege groups are replicated only by a task created
  with ``"rbac": true`` (password hashes travel with them), byte for byte but for the origin.
- Database records are always replicated (a replicated collection may live in one); a collection
  outside the ``default`` database is keyed ``db/name``, which is how a task's ``collections``
  would name it.
- A task that replicates some collections follows them by id once it has seen them by name, so a
  renamed collection (its state under the new name, then a ``renamed`` record under the old one)
  and the aliases of a replicated collection are replicated too.
- Anything else is copied byte for byte.

The router remembers the ids it replicates (``note``); the replicator seeds them from the catalog
snapshot when a session starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pyarrow as pa

from cdc.spec import TaskSpec
from schemas.catalog import is_alias_key, is_database_key, split_qualified
from schemas.rbac import is_rbac_key
from schemas.resource_groups import is_resource_group_key
from schemas.topics import catalog_topic, wal_prefix, wal_topic
from schemas.wal import HEADER_KEY, WalHeader, WalRecord

log = logging.getLogger(__name__)
SKIP_ORIGIN, SKIP_FILTERED = "origin", "filtered"


@dataclass(frozen=True)
class Outgoing:
    """One record to produce on the target."""

    topic: str
    partition: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True)
class CollectionEvent:
    """What the replicator learns from one catalog record of a collection it replicates."""

    name: str
    collection_id: int
    shards_num: int
    active: bool
    schema_version: int


@dataclass(frozen=True)
class Decision:
    out: Outgoing | None
    skipped: str | None = None  # SKIP_ORIGIN or SKIP_FILTERED when ``out`` is None
    collection: CollectionEvent | None = None  # catalog records only
    schema_version: int = 0  # WAL records: the schema version the rows were written with


class Router:
    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.source_site = spec.source.site
        self.target_site = spec.target.site
        self.source_catalog = catalog_topic(spec.source.namespace)
        self.target_catalog = catalog_topic(spec.target.namespace)
        self._wal_prefix = wal_prefix(spec.source.namespace)
        self._ids: set[int] = set()  # collections replicated, by id (they keep it across renames)

    def wants(self, name: str, collection_id: int) -> bool:
        """Whether the task replicates this collection; remembers its id when it does."""
        if self.spec.wants(name) or collection_id in self._ids:
            self._ids.add(collection_id)
            return True
        return False

    def source_wal_topic(self, collection_id: int) -> str:
        return wal_topic(self.spec.source.namespace, collection_id)

    def target_wal_topic(self, collection_id: int) -> str:
        return wal_topic(self.spec.target.namespace, collection_id)

    def collection_id_of(self, source_topic: str) -> int:
        return int(source_topic[len(self._wal_prefix) :])

    # catalog --------------------------------------------------------------------------------
    def catalog(self, key: bytes | None, value: bytes | None) -> Decision:
        if key is None:
            return Decision(None, SKIP_FILTERED)
        name = key.decode()
        if is_alias_key(name):
            return self._alias(key, value)
        if is_database_key(name):
            return self._database(key, value)
        if is_rbac_key(name):
            return self._database(key, value) if self.spec.rbac else Decision(None, SKIP_FILTERED)
        if is_resource_group_key(name):  # a site's own searchers: never replicated
            return Decision(None, SKIP_FILTERED)
        if value is None:  # a tombstone: compaction of a purged collection
            if not self.spec.wants(name):
                return Decision(None, SKIP_FILTERED)
            return Decision(Outgoing(self.target_catalog, 0, None, self.spec.target_name(name).encode()))
        target_key = self.spec.target_name(name).encode()
        try:
            d = json.loads(value)
            if not self.wants(name, int(d["collection_id"])):
                return Decision(None, SKIP_FILTERED)
            event = CollectionEvent(
                name=name,
                collection_id=int(d["collection_id"]),
                shards_num=int(d.get("shards_num", 1)),
                active=d.get("state", "active") == "active",
                schema_version=int(d.get("schema", {}).get("version", 1)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if not self.spec.wants(name):
                return Decision(None, SKIP_FILTERED)
            log.error("copying an unreadable catalog record unchanged key=%s error=%s", name, exc)
            return Decision(Outgoing(self.target_catalog, 0, value, target_key))
        origin = d.get("origin") or ""
        if origin == self.target_site:
            return Decision(None, SKIP_ORIGIN, event)
        target_name = self.spec.target_name(name)
        if not origin or target_name != name:
            d["origin"] = origin or self.source_site
            d["name"] = split_qualified(target_name)[1]  # the key is db/name outside `default`
            value = json.dumps(d, separators=(",", ":"), sort_keys=True).encode()
        return Decision(Outgoing(self.target_catalog, 0, value, target_key), None, event)

    def _database(self, key: bytes, value: bytes | None) -> Decision:
        """A database (or access-control) record: loop prevention and origin stamping, otherwise
        copied as is."""
        if value is None:
            return Decision(Outgoing(self.target_catalog, 0, None, key))
        try:
            d = json.loads(value)
            origin = d.get("origin") or ""
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("copying an unreadable database record unchanged key=%s error=%s", key, exc)
            return Decision(Outgoing(self.target_catalog, 0, value, key))
        if origin == self.target_site:
            return Decision(None, SKIP_ORIGIN)
        if not origin:
            d["origin"] = self.source_site
            value = json.dumps(d, separators=(",", ":"), sort_keys=True).encode()
        return Decision(Outgoing(self.target_catalog, 0, value, key))

    def _alias(self, key: bytes, value: bytes | None) -> Decision:
        """An alias record: replicated with its collection (all, or one the task replicates)."""
        if value is None:
            return Decision(Outgoing(self.target_catalog, 0, None, key))
        try:
            d = json.loads(value)
            wanted = self.wants(str(d.get("collection", "")), int(d["collection_id"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("copying an unreadable alias record unchanged key=%s error=%s", key, exc)
            return Decision(Outgoing(self.target_catalog, 0, value, key))
        if not wanted:
            return Decision(None, SKIP_FILTERED)
        origin = d.get("origin") or ""
        if origin == self.target_site:
            return Decision(None, SKIP_ORIGIN)
        mapped = self.spec.target_name(str(d.get("collection", "")))
        if not origin or mapped != d.get("collection"):
            d["origin"] = origin or self.source_site
            d["collection"] = mapped
            value = json.dumps(d, separators=(",", ":"), sort_keys=True).encode()
        return Decision(Outgoing(self.target_catalog, 0, value, key))

    # WAL ------------------------------------------------------------------------------------
    def wal(
        self, source_topic: str, partition: int, value: bytes | None, key: bytes | None = None
    ) -> Decision:
        target = self.target_wal_topic(self.collection_id_of(source_topic))
        if value is None:
            return Decision(Outgoing(target, partition, None, key))
        header = peek_header(value)
        if header is None:  # malformed: copied as is, B's consumers skip it just as A's do
            return Decision(Outgoing(target, partition, value, key))
        version = header.schema_version
        if header.origin == self.target_site:
            return Decision(None, SKIP_ORIGIN, schema_version=version)
        mapped = self.spec.target_name(header.collection)
        if not header.origin or mapped != header.collection:
            record = WalRecord.decode(value).with_header(
                origin=header.origin or self.source_site, collection=mapped
            )
            value = record.encode()
        return Decision(Outgoing(target, partition, value, key), schema_version=version)


def peek_header(raw: bytes) -> WalHeader | None:
    """The WAL header alone: it sits in the Arrow schema message, before any row data."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(raw))
        return WalHeader.from_json((reader.schema.metadata or {})[HEADER_KEY])
    except (pa.ArrowInvalid, OSError, KeyError, ValueError, TypeError):
        return None
