"""Databases: which one a request works in, and creating, altering and dropping them.

A collection or alias name is looked up in the *current database*: a context variable that the
gateway sets for each request (from the request's ``db_name`` or pymilvus's ``dbname`` header)
and that is ``default`` everywhere else, so the workers, the indexer and tools see the
``default`` database unless they name another one (``db/name``) or enter ``using_db``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from schemas.catalog import DEFAULT_DB, DROPPED, DatabaseInfo
from schemas.collection import check_name
from schemas.exceptions import DatabaseNotFound, InvalidArgument, LimitExceeded
from schemas.timestamptz import PROPERTY as TZ_PROPERTY
from schemas.timestamptz import check_zone

_CURRENT: ContextVar[str] = ContextVar("walvus_database", default=DEFAULT_DB)
MAX_DATABASES = 64  # Milvus's rootCoord.maxDatabaseNum


def current_db() -> str:
    return _CURRENT.get()


@contextmanager
def using_db(name: str) -> Iterator[str]:
    """Resolve names in database ``name`` inside the block ("" is ``default``)."""
    token = _CURRENT.set(name or DEFAULT_DB)
    try:
        yield name or DEFAULT_DB
    finally:
        _CURRENT.reset(token)


class DatabaseDdl:
    """create / drop / alter databases on a ``Walvus`` (its catalog, clock and site)."""

    def __init__(self, walvus: Any) -> None:
        self.w = walvus

    def create(self, name: str, properties: dict[str, str] | None = None) -> DatabaseInfo:
        check_name("database", name)
        _check_properties(properties or {})
        if self.w.catalog.database(name) is not None:
            raise InvalidArgument(f"database already exist: {name}", database=name)
        if len(self.w.catalog.databases()) >= MAX_DATABASES:
            raise LimitExceeded(
                f"database number ({MAX_DATABASES}) exceeds max configuration ({MAX_DATABASES})"
            )
        ts = self.w.clock.now()
        return self._publish(DatabaseInfo(name, db_id=ts, properties=dict(properties or {}), created_ts=ts))

    def drop(self, name: str) -> None:
        """Milvus: the default database cannot be dropped, a database with collections neither;
        dropping a database that does not exist succeeds."""
        if name in ("", DEFAULT_DB):
            raise InvalidArgument("can not drop default database", database=DEFAULT_DB)
        info = self.w.catalog.database(name)
        if info is None:
            check_name("database", name)
            return
        if self.w.catalog.collections(db_name=name):
            raise InvalidArgument(
                f"database:{name} not empty, must drop all collections before drop database"
            )
        self._publish(replace(info, state=DROPPED, event="drop_database"))

    def alter(self, name: str, changes: dict[str, str], delete_keys: list[str]) -> DatabaseInfo:
        info = self.require(name)
        _check_properties(changes)
        props = {k: v for k, v in {**info.properties, **changes}.items() if k not in set(delete_keys)}
        return self._publish(replace(info, properties=props, event="alter_database"))

    def require(self, name: str) -> DatabaseInfo:
        info = self.w.catalog.database(name or DEFAULT_DB)
        if info is None:
            raise DatabaseNotFound(name)
        return info

    def _publish(self, info: DatabaseInfo) -> DatabaseInfo:
        info = replace(info, origin=self.w.site)
        self.w.catalog.publish_records([info])
        return info


def _check_properties(props: dict[str, str]) -> None:
    """Properties walvus interprets are checked; others are kept as given, as Milvus does."""
    if TZ_PROPERTY in props:
        check_zone(props[TZ_PROPERTY])
