"""The root of every walvus error, and the errors about schemas and records.

Each class also subclasses the matching builtin, and carries a Milvus error code
(``code``) that the gateway turns into a gRPC status in one place.
"""

from __future__ import annotations

from typing import Any


class WalvusError(Exception):
    """Root of all walvus errors. ``context`` holds collection, field, row, shard, offset..."""

    code: int = 65535  # Milvus: unexpected error

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class InvalidArgument(WalvusError, ValueError):
    """A request parameter is wrong (Milvus code 1100, "invalid parameter")."""

    code = 1100


class SchemaError(InvalidArgument):
    """A collection schema is not valid."""


class FieldNameInvalid(SchemaError):
    """A field name Milvus refuses (Milvus code 1701, "field name invalid")."""

    code = 1701


class ValidationError(InvalidArgument):
    """A batch of rows does not match its collection's schema."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None, **ctx: Any):
        super().__init__(message, field=field, row=row, **ctx)
        self.field = field
        self.row = row


class LimitExceeded(InvalidArgument):
    """A request is over one of the configured limits (size, nq, topk, dimension...)."""


class CapacityExceeded(LimitExceeded):
    """Shards x partitions over the collection limit (Milvus code 250, "general capacity exceeded")."""

    code = 250


class RequestTooLarge(LimitExceeded):
    """A request over the size limit (Milvus code 1102, "parameter too large")."""

    code = 1102


class CollectionNotFound(WalvusError, LookupError):
    code = 100

    def __init__(self, name: str) -> None:
        super().__init__(f"collection not found[collection={name}]", collection=name)


class CollectionExists(InvalidArgument):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection already exists[collection={name}]", collection=name)


class PartitionNotFound(WalvusError, LookupError):
    code = 200

    def __init__(self, collection: str, partition: str) -> None:
        super().__init__(
            f"partition not found[partition={partition}] in collection {collection}: "
            f"partition name {partition} not found",
            collection=collection,
            partition=partition,
        )


class CollectionNotLoaded(WalvusError, RuntimeError):
    code = 101

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection not loaded[collection={name}]: call load_collection() first", collection=name
        )


class IndexNotFound(WalvusError, LookupError):
    code = 700

    def __init__(self, collection: str, index: str | None = None) -> None:
        what = f"[index={index}]" if index else ""
        super().__init__(f"index not found{what} in collection {collection}", collection=collection)


class RecordFormatError(WalvusError, ValueError):
    """A WAL or ingest record cannot be decoded."""

    code = 1100


class AliasNotFound(WalvusError, LookupError):
    """Milvus code 1600, "alias not found"."""

    code = 1600

    def __init__(self, alias: str, database: str = "default") -> None:
        super().__init__(f"alias not found[database={database}][alias={alias}]", alias=alias)


class AliasNameConflict(InvalidArgument):
    """An alias and a collection cannot share a name (Milvus code 1601)."""

    code = 1601


class AliasExists(InvalidArgument):
    """Milvus code 1602, "alias already exist"."""

    code = 1602

    def __init__(self, alias: str, collection: str, database: str = "default") -> None:
        super().__init__(
            f"{alias} is alias to another collection: {collection}: "
            f"alias already exist[database={database}][alias={alias}]",
            alias=alias,
            collection=collection,
        )


class AliasInUse(WalvusError, ValueError):
    """A collection dropped through an alias, or while aliases point to it (Milvus: 65535)."""

    code = 65535


class DatabaseNotFound(WalvusError, LookupError):
    """Milvus code 800, "database not found"."""

    code = 800

    def __init__(self, name: str) -> None:
        super().__init__(f"database not found[database={name}]", database=name)


class PermissionDenied(WalvusError, PermissionError):
    """The caller lacks the privilege (Milvus code 1401, "privilege not permitted")."""

    code = 1401

    def __init__(self, privilege: str, user: str, database: str) -> None:
        super().__init__(
            f"Privilege{privilege}: permission deny to {user} in the `{database}` database",
            privilege=privilege,
            user=user,
            database=database,
        )
