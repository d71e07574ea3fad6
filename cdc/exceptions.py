"""Errors of the CDC replicator and its task API. Each maps to one HTTP status (``http_status``)."""

from __future__ import annotations

from typing import Any

from schemas.exceptions import WalvusError


class CdcError(WalvusError):
    """Root of the CDC errors."""

    http_status: int = 500


class InvalidTask(CdcError, ValueError):
    """A task request is malformed or asks for something that cannot be done."""

    code = 1100
    http_status = 400


class UnknownCollection(InvalidTask):
    """The task names a collection that the source site does not have."""

    def __init__(self, names: list[str], source: str) -> None:
        super().__init__(
            f"collection not found on the source site: {', '.join(names)} (source {source})",
            collections=names,
            source=source,
        )


class TaskNotFound(CdcError, LookupError):
    http_status = 404

    def __init__(self, task: str) -> None:
        super().__init__(f"cdc task not found[task={task}]", task=task)


class TaskExists(CdcError, ValueError):
    http_status = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"a cdc task with this name already exists[task={name}]", task=name)


class ClusterUnreachable(CdcError, ConnectionError):
    """A Kafka cluster (source or target) did not answer in time, or refused the credentials."""

    code = 2
    http_status = 502

    def __init__(self, role: str, bootstrap: str, detail: Any) -> None:
        super().__init__(
            f"{role} Kafka cluster {bootstrap} is unreachable: {detail}", role=role, bootstrap=bootstrap
        )


class TopicMismatch(CdcError, RuntimeError):
    """A target topic exists with a different partition count than its source."""

    http_status = 409


class TaskFenced(CdcError, RuntimeError):
    """Another replicator took over this task's transactional id; this one must stop."""


class TaskStoreLocked(CdcError, RuntimeError):
    """Another ``walvus cdc serve`` already runs on this task store."""
