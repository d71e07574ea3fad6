"""Aliases: another name for a collection, in the collection's database.

An alias record names its collection by id, so a rename keeps it; a switch (``alter``) is one
catalog record, so a reader resolves the alias to the old collection or the new one, never to
nothing. Milvus's rules: an alias and a collection cannot share a name, an alias cannot point to
an alias, creating the same alias twice is a no-op, dropping a missing one succeeds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from schemas.catalog import DROPPED, AliasInfo, CatalogEvent, CollectionInfo
from schemas.collection import name_problem
from schemas.exceptions import AliasExists, AliasNameConflict, AliasNotFound, SchemaError
from walvus.databases import current_db


def check_alias(alias: str) -> None:
    """Milvus's rules for collection names, in its words for aliases."""
    problem = name_problem("collection", alias)
    if problem is not None:
        raise SchemaError(
            f"Invalid collection alias: {alias}. {problem.replace('collection name', 'collection alias')}",
            alias=alias,
        )


class AliasDdl:
    """create / alter / drop aliases on a ``Walvus`` (its catalog, clock and site)."""

    def __init__(self, walvus: Any) -> None:
        self.w = walvus

    def create(self, collection: str, alias: str) -> AliasInfo:
        info = self._checked(collection, alias)
        existing = self.w.catalog.alias(alias)
        if existing is not None:
            if existing.collection_id == info.collection_id:
                return existing  # Milvus: creating the same alias twice is a no-op
            there = self.w.catalog.by_id(existing.collection_id)
            raise AliasExists(alias, there.name if there is not None else existing.collection, current_db())
        return self._publish(
            AliasInfo(
                alias, info.collection_id, info.name, created_ts=self.w.clock.now(), db_name=info.db_name
            )
        )

    def alter(self, collection: str, alias: str) -> AliasInfo:
        """Point an existing alias at another collection: one catalog record, so a reader resolves
        the alias to the old collection or to the new one, never to nothing."""
        info = self._checked(collection, alias)
        existing = self.w.catalog.alias(alias)
        if existing is None:
            raise AliasNotFound(alias, current_db())
        return self._publish(
            replace(
                existing,
                collection_id=info.collection_id,
                collection=info.name,
                event=CatalogEvent.ALTER_ALIAS,
            )
        )

    def drop(self, alias: str) -> None:
        """Milvus: dropping an alias that does not exist succeeds."""
        check_alias(alias)
        existing = self.w.catalog.alias(alias)
        if existing is not None:
            self._publish(replace(existing, state=DROPPED, event=CatalogEvent.DROP_ALIAS))

    def _checked(self, collection: str, alias: str) -> CollectionInfo:
        """The collection an alias may point to; the alias name must not be a collection's."""
        check_alias(alias)
        info = self._target(collection)
        if self.w.catalog.get_collection(alias) is not None:
            raise AliasNameConflict(
                f"alias and collection name conflict[database={current_db()}][alias={alias}]", alias=alias
            )
        return info

    def _target(self, collection: str) -> CollectionInfo:
        info = self.w.catalog.get_collection(collection)
        if info is None:
            if self.w.catalog.alias(collection) is not None:
                raise AliasNameConflict(
                    f"{collection} is an alias, not a collection: an alias must point to a collection",
                    alias=collection,
                )
            info = self.w.catalog.require(collection)
        return info

    def _publish(self, alias: AliasInfo) -> AliasInfo:
        alias = replace(alias, origin=self.w.site)
        self.w.catalog.publish_records([alias])
        return alias
