"""The catalog: collection definitions on a compacted Kafka topic, replayed into memory.

Every process that needs collection definitions runs a ``Catalog``: it reads the topic
from the beginning and then tails it, so the catalog survives any restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from schemas.catalog import (
    ALIAS_KEY_PREFIX,
    DATABASE_KEY_PREFIX,
    DEFAULT_DB,
    DEFAULT_DB_ID,
    RENAMED,
    AliasInfo,
    CatalogRecord,
    CollectionInfo,
    DatabaseInfo,
    decode_record,
    is_alias_key,
    is_database_key,
    qualify,
    record_key,
)
from schemas.collection import check_name
from schemas.exceptions import CollectionNotFound
from schemas.rbac import is_rbac_key
from schemas.resource_groups import is_resource_group_key
from schemas.topics import catalog_topic
from walvus.databases import current_db
from walvus.exceptions import LogUnavailable
from walvus.log import KafkaLog, LogMessage
from walvus.log_tail import BEGINNING, IDLE_LONG_POLL_MS, Tail
from walvus.rbac import RbacState
from walvus.resource_groups import ResourceGroups

log = logging.getLogger(__name__)
Listener = Callable[[CollectionInfo], None]


class CatalogView:
    """Reading collection states by name, alias or id; the records themselves come from a subclass.

    Names are looked up in the current database (``walvus.databases.current_db``; enter
    another with ``walvus.databases.using_db``). ``apply`` is the one place where a catalog record
    changes the view, so every reader (the Kafka-backed ``Catalog``, the in-memory one of the
    tests) resolves names the same way.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, CollectionInfo] = {}  # by qualified name
        self._by_id: dict[int, CollectionInfo] = {}
        self._aliases: dict[str, AliasInfo] = {}  # by qualified alias
        self._databases: dict[str, DatabaseInfo] = {}
        self.rbac = RbacState()  # users, roles, grants (walvus.rbac)
        self.resource_groups = ResourceGroups()  # groups and replica placements (walvus.resource_groups)

    @staticmethod
    def key(name: str) -> str:
        """The catalog key of ``name`` in the current database."""
        return qualify(current_db(), name)

    def get(self, name: str) -> CollectionInfo | None:
        """The active collection called ``name``, or the one the alias ``name`` points to."""
        info = self.get_collection(name)
        if info is not None:
            return info
        alias = self.alias(name)
        if alias is None:
            return None
        info = self._by_id.get(alias.collection_id)
        return info if info is not None and info.active else None

    def get_collection(self, name: str) -> CollectionInfo | None:
        """The active collection called exactly ``name`` (aliases not followed)."""
        info = self._by_name.get(self.key(name))
        return info if info is not None and info.active else None

    def require(self, name: str) -> CollectionInfo:
        info = self.get(name)
        if info is None:
            check_name("collection", name)  # Milvus: an invalid name is a bad parameter, not "not found"
            raise CollectionNotFound(name)
        return info

    def by_id(self, collection_id: int) -> CollectionInfo | None:
        return self._by_id.get(collection_id)

    def collections(
        self, *, include_dropped: bool = False, db_name: str | None = None
    ) -> list[CollectionInfo]:
        """Collections of every database, or of ``db_name``."""
        return [
            c
            for c in list(self._by_name.values())  # a copy: the tail thread may apply a record meanwhile
            if (include_dropped or c.active) and (db_name is None or c.db_name == db_name)
        ]

    def alias(self, name: str) -> AliasInfo | None:
        return self._aliases.get(self.key(name))

    def aliases(self, collection_id: int | None = None) -> list[str]:
        """Alias names, sorted: those of one collection, or all of the current database."""
        if collection_id is not None:
            return sorted(a.alias for a in list(self._aliases.values()) if a.collection_id == collection_id)
        db = current_db()
        return sorted(a.alias for a in list(self._aliases.values()) if a.db_name == db)

    def database(self, name: str) -> DatabaseInfo | None:
        info = self._databases.get(name or DEFAULT_DB)
        if info is None and name in ("", DEFAULT_DB):
            return DatabaseInfo(DEFAULT_DB, DEFAULT_DB_ID)
        return info if info is not None and info.active else None

    def databases(self) -> list[DatabaseInfo]:
        """Every database, ``default`` first, then by creation."""
        others = sorted(
            (d for d in list(self._databases.values()) if d.active and d.name != DEFAULT_DB),
            key=lambda d: d.created_ts,
        )
        default = self.database(DEFAULT_DB)
        assert default is not None
        return [default, *others]

    def apply(self, key: str, record: CatalogRecord | None) -> CollectionInfo | None:
        """Apply one catalog record (``None``: a tombstone). Returns the collection state that
        listeners must hear about, or None (aliases, databases, access control, tombstones, a
        renamed collection's old name)."""
        if is_rbac_key(key):
            self.rbac.apply(key, record)  # type: ignore[arg-type]
            return None
        if is_resource_group_key(key):
            self.resource_groups.apply(key, record)  # type: ignore[arg-type]
            return None
        if record is None:
            if is_alias_key(key):
                self._aliases.pop(key[len(ALIAS_KEY_PREFIX) :], None)
            elif is_database_key(key):
                self._databases.pop(key[len(DATABASE_KEY_PREFIX) :], None)
            else:
                gone = self._by_name.pop(key, None)
                if gone is not None and self._by_id.get(gone.collection_id) is gone:
                    del self._by_id[gone.collection_id]
            return None
        if isinstance(record, DatabaseInfo):
            self._databases[record.name] = record
            return None
        if isinstance(record, AliasInfo):
            qualified = qualify(record.db_name, record.alias)
            if record.active:
                self._aliases[qualified] = record
            else:
                self._aliases.pop(qualified, None)
            return None
        if record.state == RENAMED:  # the name is free; the collection lives on under its new name
            self._by_name.pop(key, None)
            return None
        self._by_name[key] = record
        self._by_id[record.collection_id] = record
        return record


class Catalog(CatalogView):
    def __init__(self, kafka: KafkaLog, namespace: str) -> None:
        super().__init__()
        self._kafka = kafka
        self.topic = catalog_topic(namespace)
        self._applied = -1  # offset of the last record applied
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Catalog:
        self._kafka.ensure_topic(self.topic, 1, compacted=True, config={"min.cleanable.dirty.ratio": "0.1"})
        self._thread = threading.Thread(target=self._tail, name="catalog-tail", daemon=True)
        self._thread.start()
        self.sync()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def add_listener(self, fn: Listener) -> None:
        """``fn`` is called (on the tail thread) with every collection state applied from now on."""
        self._listeners.append(fn)

    # writing -------------------------------------------------------------------------------
    def publish(self, info: CollectionInfo, timeout: float = 30.0) -> CollectionInfo:
        """Write a collection's new state and wait until this catalog has applied it."""
        self.publish_records([info], timeout)
        return info

    def publish_records(self, records: list[CatalogRecord], timeout: float = 30.0) -> None:
        """Write records in this order and wait until this catalog has applied them all."""
        msgs = [LogMessage(self.topic, 0, r.to_json(), key=record_key(r).encode()) for r in records]
        offsets = self._kafka.append(msgs)
        self.wait_applied(max(offsets), timeout)

    def sync(self, timeout: float = 30.0) -> None:
        """Wait until everything on the topic at this moment has been applied."""
        (end,) = self._kafka.end_offsets(self.topic, 1)
        self.wait_applied(end - 1, timeout)

    def wait_applied(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._applied < offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LogUnavailable(f"catalog did not catch up to offset {offset} in {timeout}s")
                self._cond.wait(left)

    # tail ------------------------------------------------------------------------------------
    def _tail(self) -> None:
        tail = Tail(
            self._kafka.conf,
            group="walvus-catalog-reader",
            read_committed=True,  # CDC writes the catalog in transactions
            fetch_wait_max_ms=IDLE_LONG_POLL_MS,
        )
        try:
            tail.assign({(self.topic, 0): BEGINNING})
            while not self._stop.is_set():
                try:
                    msgs = tail.poll(500, 0.1)
                except LogUnavailable as exc:
                    log.warning("catalog read failed error=%s", exc)
                    continue
                for m in msgs:
                    if m.error():
                        continue
                    self._apply(m.key(), m.value())
                    with self._cond:
                        self._applied = m.offset()
                        self._cond.notify_all()
                # CDC writes the catalog in transactions: their commit markers are never delivered,
                # so everything below the consumer's position counts as applied.
                pos = tail.positions([(self.topic, 0)])[(self.topic, 0)]
                if pos - 1 > self._applied:
                    with self._cond:
                        self._applied = pos - 1
                        self._cond.notify_all()
        finally:
            tail.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        try:
            record = None if value is None else decode_record(name, value)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("bad catalog record key=%s error=%s", name, exc)
            return
        info = self.apply(name, record)
        if info is None:
            return
        for fn in self._listeners:
            try:
                fn(info)
            except Exception:  # a listener's bug must not stop the catalog
                log.exception("catalog listener failed collection=%s", name)


def describe(info: CollectionInfo) -> dict[str, Any]:
    return {"name": info.name, "id": info.collection_id, "shards": info.shards_num, "loaded": info.loaded}
