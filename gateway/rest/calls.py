"""One REST request's view of the servicer: the database it works in, typed body fields, errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import common_pb2

from gateway.errors import INVALID_PARAMETER, UNEXPECTED

# Milvus's REST-layer codes (merr, "high-level restful api related")
NEED_AUTHENTICATE = 1800
INCORRECT_PARAMETER_FORMAT = 1801
MISSING_REQUIRED_PARAMETERS = 1802
INVALID_INSERT_DATA = 1804
CHECK_PRIMARY_KEY = 1806
OPERATION_NOT_SUPPORTED = 3000


class RestError(Exception):
    """Answered as ``{"code": code, "message": message}`` with HTTP ``http_status``."""

    def __init__(self, code: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def missing(name: str) -> RestError:
    return RestError(
        MISSING_REQUIRED_PARAMETERS,
        f"missing required parameters, error: Key: '{name}' Error:Field validation for '{name}' failed on the 'required' tag",
    )


def wrong_type(name: str, expected: str) -> RestError:
    return RestError(
        INCORRECT_PARAMETER_FORMAT,
        f"can only accept json format request, error: {name} must be {expected}",
    )


class _Context:
    """The little of ``grpc.ServicerContext`` the servicer reads: the metadata pymilvus sends (the
    database, and the caller's ``user:password`` as base64 ``authorization``), and abort."""

    def __init__(self, db: str, login: str | None) -> None:
        metadata = [("dbname", db)]
        if login:
            metadata.append(("authorization", base64.b64encode(login.encode()).decode("ascii")))
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def abort(self, code: Any, details: str) -> None:
        raise RestError(OPERATION_NOT_SUPPORTED, f"unsupported operation: {details}")


class Body:
    """The JSON body of one request, with the typed getters every handler uses."""

    def __init__(self, raw: Any, *, int64_as_str: bool = False) -> None:
        self.int64_as_str = int64_as_str  # Accept-Type-Allow-Int64: false
        if not isinstance(raw, dict):
            raise RestError(
                INCORRECT_PARAMETER_FORMAT,
                "can only accept json format request, error: body must be a JSON object",
            )
        self.raw = raw

    def __contains__(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(key)
        return default if value is None else value

    def str(self, key: str, default: str = "", *, required: bool = False) -> str:
        value = self.raw.get(key)
        if value is None or value == "":
            if required:
                raise missing(key)
            return default
        if not isinstance(value, str):
            raise wrong_type(key, "a string")
        return value

    def int(self, key: str, default: int | None = None, *, required: bool = False) -> int | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise missing(key)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(key, "an integer")
        return value

    def bool(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise wrong_type(key, "a boolean")
        return value

    def strs(self, key: str, *, required: bool = False) -> list[str]:
        value = self.raw.get(key)
        if value is None or value == []:
            if required:
                raise missing(key)
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong_type(key, "a list of strings")
        return value

    def dict(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise wrong_type(key, "a JSON object")
        return value

    def list(self, key: str, *, required: bool = False) -> list[Any]:
        value = self.raw.get(key)
        if value is None or value == []:
            if required:
                raise missing(key)
            return []
        if not isinstance(value, list):
            raise wrong_type(key, "a list")
        return value


class Rpc:
    """Calls the ``MilvusServicer``'s methods in this process, in the request's database.

    A response whose status is not Success raises ``RestError`` with the servicer's own code and
    message, so a REST client sees what a pymilvus client would."""

    def __init__(self, servicer: Any, db: str, login: str | None = None) -> None:
        self.servicer = servicer
        self.db = db
        self._context = _Context(db, login)

    def __call__(self, method: str, request: Any) -> Any:
        response = getattr(self.servicer, method)(request, self._context)
        status = response if isinstance(response, common_pb2.Status) else response.status
        if status.code or status.error_code:
            raise RestError(status.code or UNEXPECTED, status.reason)
        return response


def client_side(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a pymilvus request builder; its validation errors are invalid parameters."""
    try:
        return build(*args, **kwargs)
    except MilvusException as exc:
        raise RestError(INVALID_PARAMETER, f"invalid parameter: {exc.message}") from exc
    except (TypeError, ValueError) as exc:
        raise RestError(INVALID_PARAMETER, f"invalid parameter: {exc}") from exc


def ok(data: Any = None, **extra: Any) -> dict[str, Any]:
    return {"code": 0, "data": {} if data is None else data, **extra}
