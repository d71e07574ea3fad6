"""The gRPC server: thread pool, message-size limits, user/password authentication, TLS.

Logins: without authorization, the fixed ``WALVUS_USERS`` list (or none); with
``WALVUS_AUTHORIZATION_ENABLED``, the stored users (``gateway.auth``) and every call checked
against their grants (``gateway.authz``).

walvus gateway            # runs ``run(bootstrap)`` until SIGTERM
server = serve(walvus, searcher, GatewaySettings(port=0))   # tests: server.port
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2_grpc

from gateway.auth import FixedUsersInterceptor, RbacAuthInterceptor, parse_users
from gateway.authz import Guard
from gateway.errors import auth_failure_status
from gateway.indexes import IndexProgress
from gateway.metrics import DEFAULT_METRICS_PORT, start_http_server
from gateway.service import MilvusServicer, response_class
from walvus.processes import die_with_parent, on_stop_signal, stop_processes
from walvus.rbac_ddl import RbacDdl
from walvus.searcher import Searcher
from walvus.settings import GatewaySettings
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
SLACK_BYTES = 4 * 1024 * 1024


_REFUSALS: dict[str, grpc.RpcMethodHandler] = {}


def _refusal_for(method: str) -> grpc.RpcMethodHandler:
    handler = _REFUSALS.get(method)
    if handler is None:
        handler = _REFUSALS[method] = _refusal(method)
    return handler


def _refusal(method: str) -> grpc.RpcMethodHandler:
    name = method.rsplit("/", 1)[-1]
    try:
        cls = response_class(name)
    except KeyError:
        cls = None
    if cls is not None and (cls is common_pb2.Status or "status" in cls.DESCRIPTOR.fields_by_name):
        status = auth_failure_status()
        response = status if cls is common_pb2.Status else cls(status=status)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: response, response_serializer=cls.SerializeToString
        )

    def abort(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, auth_failure_status().reason)

    return grpc.unary_unary_rpc_method_handler(abort)


def serve(
    walvus: WriteApi,
    searcher: Searcher,
    settings: GatewaySettings | None = None,
    *,
    index_progress: IndexProgress | None = None,
    metrics_port: int | None = None,
    rest_port: int | None = None,
) -> grpc.Server:
    """Start the gateway. The port actually bound is ``server.port`` (useful with ``port=0``);
    ``metrics_port`` None means no metrics endpoint, -1 the default 9091; ``rest_port`` None means
    no REST API, 0 any free port (``server.rest.port``)."""
    settings = settings or GatewaySettings()
    limit = int(walvus.limits.max_request_mb * 1024 * 1024)
    options = [
        ("grpc.max_receive_message_length", 2 * limit + SLACK_BYTES),
        ("grpc.max_send_message_length", max(4 * limit, 256 * 1024 * 1024)),
        ("grpc.so_reuseport", 1 if settings.gateway_reuse_port or settings.gateway_processes > 1 else 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]
    users = parse_users(settings.users)
    rbac = RbacDdl(walvus, settings.root_password.get_secret_value())
    interceptors: list[grpc.ServerInterceptor] = [FixedUsersInterceptor(users, _refusal_for)] if users else []
    if settings.authorization_enabled:
        if users:
            raise ValueError(
                "WALVUS_USERS is the fixed login list used without authorization; with "
                "WALVUS_AUTHORIZATION_ENABLED=true create users with create_user() and leave WALVUS_USERS empty"
            )
        stored_users = RbacAuthInterceptor(rbac, _refusal_for)
        interceptors = [stored_users]
    # REST logins: the same users as the gRPC port (the fixed list, or the stored users)
    login: Callable[[str], bool] | None = users.__contains__ if users else None
    if settings.authorization_enabled:
        login = stored_users.verify
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="gateway"),
        interceptors=interceptors,
        options=options,
    )
    servicer = MilvusServicer(
        walvus,
        searcher,
        index_progress=index_progress,
        address=f"{settings.host}:{settings.port}",
        rbac=rbac,
        guard=Guard(walvus) if settings.authorization_enabled else None,
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(servicer, server)
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert and settings.tls_key:
        creds = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())])
        port = server.add_secure_port(address, creds)
        scheme = "https"
    else:
        port = server.add_insecure_port(address)
        scheme = "http"
    if not port:
        raise OSError(f"cannot bind the gateway to {address}")
    # REST before gRPC: a client that found the gRPC port open finds the REST port open too
    server.rest = None if rest_port is None else _start_rest(servicer, settings, login, rest_port)  # type: ignore[attr-defined]
    server.start()
    server.port = port  # type: ignore[attr-defined]
    server.uri = f"{scheme}://{settings.host}:{port}"  # type: ignore[attr-defined]
    if metrics_port is not None:
        mport = DEFAULT_METRICS_PORT if metrics_port < 0 else metrics_port
        try:
            server.metrics = start_http_server(settings.host, mport, lambda: True)  # type: ignore[attr-defined]
        except OSError as exc:  # metrics are not worth refusing service for
            log.error("metrics endpoint not started port=%d error=%s", mport, exc)
    log.info(
        "gateway listening uri=%s workers=%d auth=%s",
        server.uri,  # type: ignore[attr-defined]
        settings.grpc_workers,
        "rbac" if settings.authorization_enabled else "users" if users else "off",
    )
    return server


def _start_rest(
    servicer: MilvusServicer, settings: GatewaySettings, login: Callable[[str], bool] | None, port: int
) -> Any:
    """Milvus's RESTful API v2, calling the same servicer in this process; ``login("user:password")``
    checks a caller (None: no authentication). None when the port cannot be bound (the gRPC
    service is not refused for it)."""
    from gateway.rest.server import RestServer

    try:
        return RestServer(
            servicer,
            settings.host,
            port,
            authenticate=login,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
        ).start()
    except OSError as exc:
        log.error("rest api not started port=%d error=%s", port, exc)
        return None


class Siblings:
    """The extra gateway processes of ``gateway_processes``: same port (SO_REUSEPORT), no metrics
    endpoint of their own, restarted if they die, stopped with this one."""

    def __init__(self, count: int, port: int) -> None:
        self._env = {
            **os.environ,
            "WALVUS_GATEWAY_PROCESSES": "1",
            "WALVUS_GATEWAY_REUSE_PORT": "true",
            "WALVUS_PORT": str(port),
            "WALVUS_METRICS_PORT": "0",
            "WALVUS_REST_PORT": "0",  # the REST API is served by the first process only
        }
        self._procs = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "walvus", "gateway"], env=self._env, preexec_fn=die_with_parent()
        )

    def keep_running(self) -> None:
        for i, p in enumerate(self._procs):
            if p.poll() is not None:
                log.error("gateway process exited code=%s: restarting it", p.returncode)
                self._procs[i] = self._start()

    def stop(self) -> None:
        stop_processes(self._procs, timeout=30)


def run(bootstrap: str) -> None:
    """The ``walvus gateway`` process: real catalog, WAL and searcher; serves until SIGTERM."""
    from walvus.api import Walvus
    from walvus.searcher import open_searcher

    settings = GatewaySettings()
    walvus = Walvus.connect(bootstrap)
    searcher: Any = open_searcher(bootstrap, walvus, settings)
    progress: IndexProgress | None = None
    try:
        from walvus.index_progress import index_progress
    except ImportError:
        log.warning("walvus.index_progress is missing: DescribeIndex reports every index as finished")
    else:

        def progress(info: Any, field: str) -> tuple[int, int, int]:
            return index_progress(walvus.store, info, field)

    metrics_port = int(getattr(settings, "metrics_port", DEFAULT_METRICS_PORT))
    server = serve(
        walvus,
        searcher,
        settings,
        index_progress=progress,
        metrics_port=metrics_port,
        rest_port=settings.rest_port or None,
    )
    siblings = Siblings(settings.gateway_processes - 1, server.port)  # type: ignore[attr-defined]
    stop = threading.Event()
    previous = on_stop_signal(stop.set)  # kept while stopping: a second SIGTERM does not cut that short
    try:
        while not stop.wait(1.0):
            siblings.keep_running()
    finally:
        log.info("gateway stopping")
        siblings.stop()
        server.stop(grace=5).wait()
        rest = getattr(server, "rest", None)
        if rest is not None:
            rest.stop()
        http = getattr(server, "metrics", None)
        if http is not None:
            http.shutdown()
        close = getattr(searcher, "close", None)
        if callable(close):
            close()
        walvus.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("gateway stopped")
