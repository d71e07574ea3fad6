"""An S3 server for tests: moto's, in a thread of the test process, on a free local port.

Every test gets a bucket of its own (``S3Server.bucket``), and the delta-rs storage options that
reach it, as ``WALVUS_STORAGE_OPTIONS`` would hold them."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
