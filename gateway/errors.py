"""The one place where exceptions become Milvus ``common.Status`` messages.

pymilvus raises ``MilvusException(code, reason)`` for any status whose ``code`` or
``error_code`` is not zero, so every failure is answered with a status carrying the
new-style Milvus code, the legacy ``ErrorCode`` and a message the user can act on.
Anything unexpected is logged with its traceback and answered with code 65535.
"""

from __future__ import annotations

import logging

from pymilvus.grpc_gen import common_pb2

from schemas.exceptions import InvalidArgument, WalvusError
from schemas.filters import FilterError
from schemas.index_spec import IndexSpecError

log = logging.getLogger(__name__)

UNEXPECTED = 65535
INVALID_PARAMETER = 1100
COLLECTION_NOT_FOUND = 100
INDEX_NOT_FOUND = 700
NOT_AUTHENTICATED = 1800
PRIVILEGE_NOT_PERMITTED = 1401
PARTITION_NOT_LOADED = 201  # Milvus's ErrPartitionNotLoaded (202 is "not fully loaded", retriable)

# New-style Milvus code -> legacy ErrorCode, for clients that only read ``error_code``.
_LEGACY: dict[int, int] = {
    COLLECTION_NOT_FOUND: common_pb2.CollectionNotExists,
    INDEX_NOT_FOUND: common_pb2.IndexNotExist,
    INVALID_PARAMETER: common_pb2.IllegalArgument,
    NOT_AUTHENTICATED: common_pb2.PermissionDenied,
    PRIVILEGE_NOT_PERMITTED: common_pb2.PermissionDenied,
    2: common_pb2.ConnectFailed,
}

OK = common_pb2.Status()


def ok_with_cost(nbytes: int) -> common_pb2.Status:
    """A success status carrying Milvus's ``cost`` (``extra_info["report_value"]``), which pymilvus
    shows as ``result["cost"]`` / ``result.extra["cost"]``. walvus's unit is bytes: what a write
    appended to the WAL, or what a search or query returned (never 0, as pymilvus hides a 0)."""
    return common_pb2.Status(extra_info={"report_value": str(max(1, int(nbytes)))})


class NotSupported(InvalidArgument):
    """A Milvus feature walvus deliberately does not offer."""


class IndexMissing(WalvusError):
    """A vector field has no index yet (load needs one on every vector field)."""

    code = INDEX_NOT_FOUND


class PartitionNotLoaded(WalvusError):
    code = PARTITION_NOT_LOADED

    def __init__(self, collection: str, partition: str) -> None:
        super().__init__(
            f"partition not loaded[partition={partition}] in collection {collection}: call load_partitions() first",
            collection=collection,
            partition=partition,
        )


class SchemaOutdated(WalvusError):
    """The client built its request from an older schema; pymilvus refreshes it and retries."""

    code = INVALID_PARAMETER


def error_status(code: int, reason: str, *, input_error: bool = False) -> common_pb2.Status:
    """A failed status with both the new-style ``code`` and the legacy ``error_code``."""
    status = common_pb2.Status(
        code=code, error_code=_LEGACY.get(code, common_pb2.UnexpectedError), reason=reason
    )
    if input_error:
        status.extra_info["is_input_error"] = "true"
    return status


def status_for(exc: BaseException, *, method: str = "") -> common_pb2.Status:
    """Translate any exception into the status pymilvus turns into a ``MilvusException``."""
    if isinstance(exc, SchemaOutdated):
        status = error_status(INVALID_PARAMETER, exc.message)
        status.error_code = common_pb2.SchemaMismatch
        return status
    if isinstance(exc, WalvusError):
        return error_status(exc.code, exc.message, input_error=isinstance(exc, InvalidArgument))
    if isinstance(exc, FilterError):  # Milvus's shape, then walvus's pointer to the problem
        return error_status(
            INVALID_PARAMETER,
            f"failed to create query plan: cannot parse expression: {exc.expr}, error: {exc}",
            input_error=True,
        )
    if isinstance(exc, IndexSpecError):
        return error_status(INVALID_PARAMETER, str(exc), input_error=True)
    if isinstance(exc, ValueError):
        return error_status(INVALID_PARAMETER, f"invalid parameter: {exc}", input_error=True)
    log.error("unexpected error method=%s error=%r", method, exc, exc_info=exc)
    return error_status(UNEXPECTED, f"unexpected error in {method or 'walvus'}: {type(exc).__name__}: {exc}")


def auth_failure_status() -> common_pb2.Status:
    return error_status(
        NOT_AUTHENTICATED,
        "auth check failure, please check username and password are correct",
    )
