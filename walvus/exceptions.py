"""Errors of the runtime: the log and the storage, translated from confluent-kafka and deltalake."""

from __future__ import annotations

from schemas.exceptions import InvalidArgument, WalvusError


class LogUnavailable(WalvusError, ConnectionError):
    """Kafka did not answer or refused a write."""

    code = 2  # Milvus: UnexpectedError / service unavailable


class StorageError(WalvusError, OSError):
    """A Delta table could not be read or written."""

    code = 2


class CommitConflict(StorageError):
    """Another writer committed to the same Delta table first; nothing of this commit was written."""


class FlushTimeout(WalvusError, TimeoutError):
    code = 1


class SnapshotNotFound(WalvusError, LookupError):
    code = 1100  # invalid parameter: Milvus 2.5's codes have none for snapshots

    def __init__(self, collection: str, name: str) -> None:
        super().__init__(
            f"snapshot not found[snapshot={name}] of collection {collection}: list_snapshots() names them",
            collection=collection,
            snapshot=name,
        )


class SnapshotExists(InvalidArgument):
    def __init__(self, collection: str, name: str) -> None:
        super().__init__(
            f"snapshot already exists[snapshot={name}] of collection {collection}: drop it or pick another name",
            collection=collection,
            snapshot=name,
        )


class RestoreJobNotFound(WalvusError, LookupError):
    code = 1100

    def __init__(self, job_id: int) -> None:
        super().__init__(f"restore job not found[job_id={job_id}]", job_id=job_id)
