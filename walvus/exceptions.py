"""Errors of the runtime: the log and the storage, translated from confluent-kafka and deltalake."""

from __future__ import annotations

from schemas.exceptions import WalvusError


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
