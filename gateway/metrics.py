"""Prometheus metrics of the gateway, and the small HTTP server that exposes them.

``GET /metrics`` serves the Prometheus text format; ``GET /healthz`` answers 200 ``ok``
while the gateway is healthy and 503 otherwise. Port 9091 by default, like Milvus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

log = logging.getLogger(__name__)
DEFAULT_METRICS_PORT = 9091

REQUESTS = Counter(
    "walvus_gateway_requests_total",
    "gRPC requests answered, by method and Milvus status code",
    ["method", "code"],
)
LATENCY = Histogram(
    "walvus_gateway_request_seconds",
    "Time to answer a gRPC request, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
)
ROWS_WRITTEN = Counter(
    "walvus_gateway_rows_written_total", "Rows accepted by Insert, Upsert and Delete", ["op"]
)


class RpcMetrics:
    """Label children cached per method, so recording a call costs two dictionary lookups."""

    def __init__(self) -> None:
        self._latency: dict[str, object] = {}
        self._count: dict[tuple[str, int], object] = {}

    def observe(self, method: str, code: int, seconds: float) -> None:
        hist = self._latency.get(method)
        if hist is None:
            hist = self._latency[method] = LATENCY.labels(method)
        hist.observe(seconds)  # type: ignore[attr-defined]
        key = (method, code)
        counter = self._count.get(key)
        if counter is None:
            counter = self._count[key] = REQUESTS.labels(method, str(code))
        counter.inc()  # type: ignore[attr-defined]


def start_http_server(host: str, port: int, healthy: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread; ``port`` 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/health", "/livez"):
                ok = _safe(healthy)
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("metrics http " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="gateway-metrics", daemon=True).start()
    log.info("metrics listening url=http://%s:%d/metrics", host, server.server_address[1])
    return server


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a failing health check means unhealthy, not a crashed endpoint
        log.exception("health check failed")
        return False
