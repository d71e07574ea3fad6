"""Serve the REST app with uvicorn on a thread of the gateway process."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from gateway.rest.app import build_app

log = logging.getLogger(__name__)


class RestServer:
    """``/v2/vectordb/...`` on ``host:port`` (0: any free port; ``.port`` is the one bound)."""

    def __init__(
        self,
        servicer: Any,
        host: str,
        port: int,
        *,
        authenticate: Callable[[str], bool] | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets that say TCP,
        # and without it every keep-alive response waited ~40 ms (Nagle against delayed ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        self._socket = sock
        self.port: int = sock.getsockname()[1]
        tls = tls_cert is not None and tls_key is not None
        self.uri = f"{'https' if tls else 'http'}://{host}:{self.port}"
        config = uvicorn.Config(
            build_app(servicer, authenticate),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls_cert) if tls else None,
            ssl_keyfile=str(tls_key) if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="rest", daemon=True
        )

    def start(self) -> RestServer:
        self._thread.start()
        log.info("rest api listening uri=%s/v2/vectordb", self.uri)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
