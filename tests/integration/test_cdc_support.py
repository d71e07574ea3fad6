"""Helpers of the CDC integration tests (no tests here): a second site, the CDC service process,
write APIs bound to one deployment's namespace, and readers of the WAL as the target holds it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc.client import CdcClient
from cdc.clusters import read_catalog, read_to_end
from cdc.spec import Endpoint
from schemas.catalog import CollectionInfo
from schemas.topics import catalog_topic, wal_topic
from streams.live import live_rows
from tests.ports import free_port
from tests.procs import Deployment
from walvus.api import Walvus
from walvus.catalog import Catalog
from walvus.log import KafkaLog
from walvus.storage import DELETES, ROWS, SegmentStore


def site_api(dep: Deployment) -> Walvus:
    """The write API of one deployment, without reading its settings from the environment.

    Its ``Catalog`` replays the catalog topic, so on a CDC target it needs ``walvus.catalog`` to
    step over transaction markers; the tests use it on sources and read targets directly.
    """
    if dep._api is None:
        kafka = KafkaLog({"bootstrap.servers": dep.bootstrap})
        catalog = Catalog(kafka, dep.namespace).start()
        store = SegmentStore(str((dep.root / "data" / "tables").resolve()))
        dep._api = Walvus(kafka, catalog, store, namespace=dep.namespace, site=dep.namespace)
    return dep._api


def endpoint(dep: Deployment) -> dict[str, str]:
    return {"bootstrap": dep.bootstrap, "namespace": dep.namespace, "site": dep.namespace}


def namespace_api(bootstrap: str, namespace: str) -> Walvus:
    """A write API on a bare namespace (no walvus processes): enough to test the log."""
    kafka = KafkaLog({"bootstrap.servers": bootstrap})
    catalog = Catalog(kafka, namespace).start()
    return Walvus(kafka, catalog, SegmentStore("/nonexistent"), namespace=namespace, site=namespace)


def wal_records(bootstrap: str, namespace: str, collection_id: int, shards: int) -> list[list[bytes]]:
    """Every committed record of a collection's WAL, per shard, in order."""
    ep = Endpoint(bootstrap, namespace)
    topic = wal_topic(namespace, collection_id)
    return [[m.value() for m in read_to_end(ep, topic, p)] for p in range(shards)]


def catalog_state(bootstrap: str, namespace: str) -> dict[str, CollectionInfo]:
    """A site's catalog as its committed records say (read to the end, transaction markers and all)."""
    snap = read_catalog(Endpoint(bootstrap, namespace), catalog_topic(namespace))
    return {name: CollectionInfo.from_json(json.dumps(d).encode()) for name, (_, d) in snap.items()}


def store_of(dep: Deployment) -> SegmentStore:
    return SegmentStore(str((dep.root / "data" / "tables").resolve()))


def live(store: SegmentStore, info: CollectionInfo, column: str = "version") -> dict[Any, Any]:
    """Primary key -> ``column`` of a collection's live rows in Delta."""
    rows = live_rows(store, info)
    pk = info.schema.primary.name
    got = dict(zip(rows.column(pk).to_pylist(), rows.column(column).to_pylist(), strict=True))
    assert len(got) == rows.num_rows, "a key has two live rows"
    return got


def wait_flushed(dep: Deployment, info: CollectionInfo, timeout: float = 120) -> None:
    """Wait until the site's streams worker has committed every record its WAL holds now."""
    store = store_of(dep)
    topic = wal_topic(dep.namespace, info.collection_id)
    deadline = time.monotonic() + timeout
    for shard in range(info.shards_num):
        last = -1
        for m in read_to_end(Endpoint(dep.bootstrap, dep.namespace), topic, shard):
            last = m.offset()
        while last >= 0 and not all(
            store.committed_offset(info.collection_id, k, shard) >= last for k in (ROWS, DELETES)
        ):
            assert time.monotonic() < deadline, f"streams did not commit shard {shard} of {info.name}"
            time.sleep(0.05)


@dataclass
class CdcProcess:
    """``walvus cdc serve`` in its own process group, so that it can be SIGKILLed like a crash."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> CdcClient:
        return CdcClient(self.url)

    def start(self) -> None:
        env = {
            **os.environ,
            "WALVUS_CDC_PORT": str(self.port),
            "WALVUS_CDC_TASK_FILE": str(self.root / "tasks.json"),
            "WALVUS_CDC_LAG_INTERVAL_SECONDS": "0.3",
            "WALVUS_CDC_RETRY_SECONDS": "0.5",
        }
        log = open(self.root / "cdc.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "walvus", "cdc", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"cdc serve exited:\n{self.log_tail()}"
            try:
                self.client.health()
                return
            except Exception:
                assert time.monotonic() < deadline, f"cdc serve did not answer:\n{self.log_tail()}"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "cdc.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait_caught_up(self, task: str, after: float | None = None, timeout: float = 90) -> dict[str, Any]:
        """Wait until a lag measurement taken after ``after`` says the task is caught up."""
        after = time.time() if after is None else after
        deadline = time.monotonic() + timeout
        while True:
            got = self.client.get(task)
            lag = got.get("lag")
            running = got["status"]["state"] == "running"
            if running and lag and lag["caught_up"] and lag["measured_at"] > after:
                return got
            assert time.monotonic() < deadline, f"task {task} did not catch up: {got}\n{self.log_tail()}"
            time.sleep(0.2)


def new_cdc(root: Path) -> CdcProcess:
    root.mkdir(parents=True, exist_ok=True)
    proc = CdcProcess(root, free_port())
    proc.start()
    return proc
