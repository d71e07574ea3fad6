"""The task API: HTTP + JSON on the standard library's threading server.

=======  ==========================  =============================================================
method   path                        what
=======  ==========================  =============================================================
GET      /health                     ``{"status": "ok", "tasks": n}``
GET      /metrics                    Prometheus text format
GET      /tasks                      ``{"tasks": [task, ...]}``
POST     /tasks                      create (body: see ``cdc/README.md``); 201 + the task
GET      /tasks/{id or name}         the task with status, lag, per-shard lag and positions
GET      /tasks/{ref}/positions      ``{"positions": {topic: {partition: offset}}}``
GET      /tasks/{ref}/lag            ``{"lag": {...}, "lag_by_shard": [...]}``
POST     /tasks/{ref}/pause          stop replicating (the open transaction is committed first)
POST     /tasks/{ref}/resume         start again from the positions committed in the target
DELETE   /tasks/{ref}                stop and forget the task
=======  ==========================  =============================================================

Errors: ``{"error": {"type": "UnknownCollection", "message": "...", "context": {...}}}`` with
400 (bad request), 404 (no such task), 409 (name taken), 502 (a cluster is unreachable).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdc.exceptions import CdcError, InvalidTask
from cdc.metrics import registry_for
from cdc.service import CdcService
from schemas.exceptions import WalvusError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


class _NotFound(CdcError, LookupError):
    http_status = 404


class _MethodNotAllowed(CdcError):
    http_status = 405


def _route(service: CdcService, method: str, path: str, body: Any) -> tuple[int, Any]:
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts == ["health"] and method == "GET":
        return 200, {"status": "ok", "tasks": len(service.store.all())}
    if not parts or parts[0] != "tasks" or len(parts) > 3:
        raise _NotFound(f"no such endpoint: {method} {path}")
    if len(parts) == 1:
        if method == "GET":
            return 200, {"tasks": service.list()}
        if method == "POST":
            return 201, service.create(body)
    elif len(parts) == 2:
        if method == "GET":
            return 200, service.describe(parts[1])
        if method == "DELETE":
            return 200, service.delete(parts[1])
    else:
        ref, action = parts[1], parts[2]
        if method == "POST" and action in ("pause", "resume"):
            return 200, getattr(service, action)(ref)
        if method == "GET" and action == "positions":
            return 200, service.positions(ref)
        if method == "GET" and action == "lag":
            d = service.describe(ref)
            return 200, {"lag": d.get("lag"), "lag_by_shard": d["lag_by_shard"]}
        if action not in ("pause", "resume", "positions", "lag"):
            raise _NotFound(f"no such endpoint: {method} {path}")
    raise _MethodNotAllowed(f"{method} is not allowed on {path}")


def make_handler(service: CdcService) -> type[BaseHTTPRequestHandler]:
    registry = registry_for(service)

    class Handler(BaseHTTPRequestHandler):
        server_version = "walvus-cdc"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http %s", fmt % args)

        def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _handle(self, method: str) -> None:
            if method == "GET" and self.path.split("?", 1)[0] == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                return
            try:
                status, result = _route(service, method, self.path, self._body(method))
                payload = json.dumps(result, default=str).encode()
            except WalvusError as exc:
                status = getattr(exc, "http_status", 400)
                err = {"type": type(exc).__name__.lstrip("_"), "message": exc.message, "context": exc.context}
                payload = json.dumps({"error": err}, default=str).encode()
                log.info(
                    "request rejected method=%s path=%s status=%d error=%s",
                    method,
                    self.path,
                    status,
                    exc.message,
                )
            except Exception as exc:
                log.exception("request failed method=%s path=%s", method, self.path)
                status = 500
                payload = json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}).encode()
            self._send(status, payload)

        def _body(self, method: str) -> Any:
            if method != "POST":
                return None
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise InvalidTask(f"request body of {length} bytes is over the limit of {MAX_BODY}")
            raw = self.rfile.read(length) if length else b""
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise InvalidTask(f"the request body is not valid JSON: {exc}") from None

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

    return Handler


class ApiServer:
    """The HTTP server on a background thread."""

    def __init__(self, service: CdcService, host: str, port: int) -> None:
        self.httpd = ThreadingHTTPServer((host, port), make_handler(service))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="cdc-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ApiServer:
        self._thread.start()
        log.info("cdc api listening url=%s", self.url)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
