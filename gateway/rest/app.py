"""The ASGI app: ``POST /v2/vectordb/<category>/<action>``, authentication, JSON in and out."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import UNEXPECTED
from gateway.rest import catalog, collections, entities, indexes, users
from gateway.rest.calls import (
    INCORRECT_PARAMETER_FORMAT,
    NEED_AUTHENTICATE,
    OPERATION_NOT_SUPPORTED,
    Body,
    RestError,
    Rpc,
)
from gateway.rest.rows import dumps
from schemas.catalog import DEFAULT_DB

log = logging.getLogger(__name__)
Handler = Callable[[Rpc, Body], dict[str, Any]]
PREFIX = "/v2/vectordb"

ROUTES: dict[str, dict[str, Handler]] = {
    "collections": {
        "create": collections.create,
        "describe": collections.describe,
        "list": collections.list_collections,
        "has": collections.has,
        "drop": collections.drop,
        "rename": collections.rename,
        "load": collections.load,
        "release": collections.release,
        "get_load_state": collections.load_state,
        "get_stats": collections.stats,
        "alter_properties": collections.alter_properties,
        "drop_properties": collections.drop_properties,
        "flush": collections.flush,
    },
    "entities": {
        "insert": entities.insert,
        "upsert": entities.upsert,
        "delete": entities.delete,
        "get": entities.get,
        "query": entities.query,
        "search": entities.search,
        "hybrid_search": entities.hybrid_search,
    },
    "partitions": {
        "create": catalog.create_partition,
        "drop": catalog.drop_partition,
        "has": catalog.has_partition,
        "list": catalog.list_partitions,
        "load": catalog.load_partitions,
        "release": catalog.release_partitions,
        "get_stats": catalog.partition_stats,
    },
    "indexes": {
        "create": indexes.create,
        "describe": indexes.describe,
        "list": indexes.list_indexes,
        "drop": indexes.drop,
    },
    "aliases": {
        "create": catalog.create_alias,
        "alter": catalog.alter_alias,
        "drop": catalog.drop_alias,
        "describe": catalog.describe_alias,
        "list": catalog.list_aliases,
    },
    "databases": {
        "create": catalog.create_database,
        "drop": catalog.drop_database,
        "list": catalog.list_databases,
        "describe": catalog.describe_database,
        "alter": catalog.alter_database,
        "drop_properties": catalog.drop_database_properties,
    },
    "users": {
        "list": users.list_users,
        "describe": users.describe_user,
        "create": users.create_user,
        "update_password": users.update_password,
        "drop": users.drop_user,
        "grant_role": users.grant_role,
        "revoke_role": users.revoke_role,
    },
    "roles": {
        "list": users.list_roles,
        "describe": users.describe_role,
        "create": users.create_role,
        "drop": users.drop_role,
        "grant_privilege": users.grant_privilege,
        "revoke_privilege": users.revoke_privilege,
        "grant_privilege_v2": users.grant_privilege_v2,
        "revoke_privilege_v2": users.revoke_privilege_v2,
    },
}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")


def _error(exc: RestError) -> Response:
    return _json({"code": exc.code, "message": exc.message}, exc.http_status)


def credentials(header: str) -> str | None:
    """``user:password`` from ``Bearer user:password`` or ``Basic base64(user:password)``."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def _run(handler: Handler, servicer: Any, db: str, login: str | None, body: Body) -> dict[str, Any]:
    try:
        return handler(Rpc(servicer, db, login), body)
    except RestError:
        raise
    except Exception as exc:  # answered like the gRPC path's unexpected errors
        log.error("rest handler failed handler=%s error=%r", handler.__name__, exc, exc_info=exc)
        raise RestError(
            UNEXPECTED, f"unexpected error in {handler.__name__}: {type(exc).__name__}: {exc}"
        ) from exc


def build_app(servicer: Any, authenticate: Callable[[str], bool] | None = None) -> Starlette:
    """The REST API over ``servicer``; ``authenticate("user:password")`` None means no auth."""

    async def endpoint(request: Request) -> Response:
        category = request.path_params["category"]
        action = request.path_params["action"]
        handler = ROUTES.get(category, {}).get(action)
        if handler is None:
            return await no_endpoint(request)
        given = credentials(request.headers.get("authorization", ""))
        if authenticate is not None:
            if given is None or not authenticate(given):
                log.warning("rest authentication failed path=%s", request.url.path)
                return _error(RestError(NEED_AUTHENTICATE, "user hasn't authenticated", 401))
        raw = await request.body()
        try:
            allow_int64 = request.headers.get("accept-type-allow-int64", "true").strip().lower() != "false"
            body = Body(orjson.loads(raw) if raw.strip() else {}, int64_as_str=not allow_int64)
        except orjson.JSONDecodeError as exc:
            return _error(
                RestError(INCORRECT_PARAMETER_FORMAT, f"can only accept json format request, error: {exc}")
            )
        except RestError as exc:
            return _error(exc)
        try:
            db = DEFAULT_DB if category == "databases" else body.str("dbName", DEFAULT_DB)
            return _json(await run_in_threadpool(_run, handler, servicer, db, given, body))
        except RestError as exc:
            return _error(exc)

    async def no_endpoint(request: Request) -> Response:
        return _error(
            RestError(OPERATION_NOT_SUPPORTED, f"unsupported operation: no endpoint {request.url.path}", 404)
        )

    return Starlette(
        routes=[
            Route(PREFIX + "/{category}/{action}", endpoint, methods=["POST"]),
            Route("/{path:path}", no_endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
