"""The server around the servicer: authentication, TLS, metrics and health, message limits."""

from __future__ import annotations

import logging
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pymilvus import MilvusClient, MilvusException

from gateway.auth import parse_users
from gateway.metrics import start_http_server
from tests.memory import running_gateway


def test_no_users_means_no_authentication() -> None:
    with running_gateway() as gw:
        c = MilvusClient(gw.uri, user="anyone", password="anything")
        assert c.list_collections() == []
        c.close()


def test_authentication() -> None:
    with running_gateway(users="root:Milvus, alice:s3cret") as gw:
        for kwargs in ({}, {"user": "root", "password": "wrong"}, {"token": "alice:nope"}):
            with pytest.raises(MilvusException, match="auth check failure") as err:
                MilvusClient(gw.uri, **kwargs).list_collections()
            assert err.value.code == 1800
        root = MilvusClient(gw.uri, user="root", password="Milvus")
        root.create_collection("secured", dimension=2)
        alice = MilvusClient(gw.uri, token="alice:s3cret")
        assert alice.list_collections() == ["secured"]
        alice.insert("secured", [{"id": 1, "vector": [1, 2]}])
        assert alice.query("secured", filter="id == 1")[0]["id"] == 1
        root.close()
        alice.close()


def test_parse_users() -> None:
    assert parse_users(" a:b ,c:d:e,") == {"a:b", "c:d:e"}
    with pytest.raises(ValueError, match="user:password pairs"):
        parse_users("nopassword")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with running_gateway(tls_cert=cert, tls_key=key) as gw:
        assert gw.uri.startswith("https://")
        c = MilvusClient(gw.uri, server_pem_path=str(cert), server_name="localhost")
        c.create_collection("tls", dimension=2)
        assert c.list_collections() == ["tls"]
        c.close()


def test_metrics_and_health_endpoint() -> None:
    healthy = {"ok": True}
    http = start_http_server("127.0.0.1", 0, lambda: healthy["ok"])
    base = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        with running_gateway() as gw:
            c = MilvusClient(gw.uri)
            c.list_collections()
            with pytest.raises(MilvusException):
                c.describe_collection("missing")
            c.close()
        body = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'walvus_gateway_requests_total{code="0",method="ShowCollections"}' in body
        assert 'walvus_gateway_requests_total{code="100",method="DescribeCollection"}' in body
        assert "walvus_gateway_request_seconds_bucket" in body
        assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"
        healthy["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz")
        assert err.value.code == 503
    finally:
        http.shutdown()


def test_oversized_messages_get_a_readable_error() -> None:
    from walvus.settings import LimitSettings

    with running_gateway(limits=LimitSettings(max_request_mb=0.5)) as gw:
        c = MilvusClient(gw.uri)
        c.create_collection("big", dimension=512)
        with pytest.raises(MilvusException, match="over the limit of 0.5 MB"):
            c.search("big", [[0.1] * 512] * 300, limit=1)
        c.close()


def test_run_builds_the_real_objects_and_stops_on_sigterm(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import signal
    import sys
    import threading
    import time
    import types

    from gateway.server import run
    from tests.memory import MemorySearcher, memory_walvus
    from walvus.api import Walvus

    walvus = memory_walvus()
    closed: list[str] = []
    walvus.close = lambda: closed.append("walvus")  # type: ignore[method-assign]

    class SearcherService(MemorySearcher):
        @classmethod
        def from_settings(cls, bootstrap: str, w: Walvus) -> SearcherService:
            assert bootstrap == "broker:9092" and w is walvus
            return cls(w)

        def close(self) -> None:
            closed.append("searcher")

    module = types.ModuleType("searcher.service")
    module.SearcherService = SearcherService  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "searcher.service", module)
    monkeypatch.setattr(Walvus, "connect", classmethod(lambda cls, bootstrap: walvus))
    monkeypatch.setenv("WALVUS_PORT", "0")
    monkeypatch.setenv("WALVUS_HOST", "127.0.0.1")
    monkeypatch.setattr("gateway.server.DEFAULT_METRICS_PORT", 0)
    caplog.set_level(logging.INFO, logger="gateway.server")
    seen: dict[str, object] = {}

    def use_then_stop() -> None:
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                uris = [
                    r.args[0] for r in caplog.records if r.getMessage().startswith("gateway listening uri=")
                ]
                if uris:
                    c = MilvusClient(str(uris[0]))
                    c.create_collection("via_run", dimension=2)
                    seen["collections"] = c.list_collections()
                    c.close()
                    break
                time.sleep(0.05)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=use_then_stop, daemon=True).start()
    handler = signal.getsignal(signal.SIGTERM)
    run("broker:9092")
    assert seen["collections"] == ["via_run"]
    assert closed == ["searcher", "walvus"]
    assert signal.getsignal(signal.SIGTERM) is handler
