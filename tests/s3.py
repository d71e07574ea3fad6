"""An S3 server for tests: moto's, in a thread of the test process, on a free local port.

Every test gets a bucket of its own (``S3Server.bucket``), and the delta-rs storage options that
reach it, as ``WALVUS_STORAGE_OPTIONS`` would hold them."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pyarrow.fs as pafs
from moto.server import ThreadedMotoServer

_buckets = itertools.count(1)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def options(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "walvus-test",
            "AWS_SECRET_ACCESS_KEY": "walvus-test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",  # one writer per table in tests: no locking provider
        }

    @property
    def env(self) -> dict[str, str]:
        return {"WALVUS_STORAGE_OPTIONS": json.dumps(self.options)}

    def bucket(self) -> str:
        """A new empty bucket; its s3:// URI."""
        name = f"walvus-{os.getpid()}-{next(_buckets)}"
        self.filesystem().create_dir(name)
        return f"s3://{name}"

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key="walvus-test",
            secret_key="walvus-test",
            region="us-east-1",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


class FaultyS3:
    """An HTTP proxy in front of the S3 server that answers 503 to the requests ``refuse`` picks
    while ``failing`` is set: an object store that cannot serve some objects for a while."""

    def __init__(self, server: S3Server, refuse: Callable[[str, str], bool]) -> None:
        self.upstream = urlsplit(server.endpoint)
        self.refuse = refuse  # (method, path) -> answer 503
        self.failing = False
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.failing and proxy.refuse(self.command, self.path):
                    proxy.refused += 1
                    self._answer(503, {"Content-Type": "application/xml"}, _UNAVAILABLE)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body, headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
                    if self.command == "HEAD" and resp.getheader("Content-Length") is not None:
                        out["Content-Length"] = resp.getheader("Content-Length")
                finally:
                    conn.close()
                self._answer(resp.status, out, data)

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if self.command != "HEAD":  # a HEAD answer keeps the server's (the object's size)
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="faulty-s3", daemon=True)

    @property
    def options(self) -> dict[str, str]:
        """Storage options that reach the bucket through this proxy."""
        host, port = self._httpd.server_address[:2]
        return {**S3Server(f"http://{host}:{port}").options}

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


_HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_UNAVAILABLE = b"<?xml version='1.0'?><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>"
