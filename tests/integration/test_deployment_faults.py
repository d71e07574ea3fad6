"""kill -9 of the broker, and of the whole deployment, while a client writes.

``walvus up`` runs a broker of its own here. Every insert the client saw acknowledged must be
live exactly once afterwards; an insert that failed may or may not have landed (the client
cannot know), but never twice, and no row appears that nobody wrote.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from pymilvus import MilvusClient, MilvusException

from tests.integration.up_support import Up, gone, up_env, wait_port, wait_serving
from tests.ports import free_port

pytestmark = pytest.mark.integration
DIM = 8
BATCH = 50


class Writer(threading.Thread):
    """Inserts batches of fresh keys; sorts each batch into acknowledged or failed."""

    def __init__(self, uri: str, name: str) -> None:
        super().__init__(name="writer", daemon=True)
        self.uri, self.coll = uri, name
        self.acked: list[int] = []
        self.failed: list[int] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.batches = 0

    def run(self) -> None:
        client = MilvusClient(self.uri, timeout=30, dedicated=True)
        rng = np.random.default_rng(5)
        nxt = 0
        while not self.stop.is_set():
            ids = list(range(nxt, nxt + BATCH))
            nxt += BATCH
            vecs = rng.random((BATCH, DIM), dtype=np.float32)
            try:
                client.insert(self.coll, [{"id": i, "vector": vecs[k].tolist()} for k, i in enumerate(ids)])
            except MilvusException as exc:
                self.failed += ids
                self.errors.append(str(exc)[:200])
                time.sleep(0.2)
            else:
                self.acked += ids
                self.batches += 1
            time.sleep(0.02)
        client.close()

    def wait_batches(self, n: int, timeout: float = 120) -> None:
        """Until ``n`` more batches were acknowledged (the deployment really takes writes)."""
        want = self.batches + n
        deadline = time.monotonic() + timeout
        while self.batches < want:
            assert time.monotonic() < deadline, f"no acknowledged writes in {timeout}s: {self.errors[-3:]}"
            assert self.is_alive()
            time.sleep(0.1)


def _start(tmp_path: Path, env: dict[str, str], n: int) -> tuple[Up, str]:
    up = Up(tmp_path / "data", env, tmp_path / f"up{n}.log")
    uri = up.wait_up()
    wait_port(int(env["WALVUS_PORT"]), up.proc)
    wait_serving(uri, up.proc)
    return up, uri


def _broker_pid(data_dir: Path) -> int:
    return int((data_dir / "kafka" / "kafka.pid").read_text())


def _check_exactly_once(uri: str, name: str, writer: Writer, tables: Path) -> None:
    client = MilvusClient(uri, timeout=120, dedicated=True)  # not a channel left from before a kill
    try:
        client.flush(name)
        attempted = set(writer.acked) | set(writer.failed)
        present: list[int] = []
        for lo in range(0, max(attempted) + 1, 10_000):
            got = client.query(
                name,
                filter=f"id >= {lo} and id < {lo + 10_000}",
                output_fields=["id"],
                limit=16_384,
                consistency_level="Strong",
            )
            present += [r["id"] for r in got]
        count = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    finally:
        client.close()
    assert len(present) == len(set(present)), "a key is live twice"
    assert count[0]["count(*)"] == len(present)
    missing = set(writer.acked) - set(present)
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:5]}"
    assert set(present) <= attempted, "rows nobody wrote"
    # and in storage: no WAL row was committed to Delta twice
    for log_dir in tables.rglob("_delta_log"):
        table = DeltaTable(str(log_dir.parent)).to_pyarrow_table(columns=["_shard", "_seq"])
        if table.num_rows:
            pairs = pc.add(pc.multiply(table["_shard"].cast("int64"), 1 << 56), table["_seq"])
            assert pc.count_distinct(pairs).as_py() == table.num_rows, f"duplicate rows in {log_dir.parent}"


def _rows_versions(tables: Path) -> int:
    """The Delta version of the (one) rows table under ``tables``; -1 before its first commit."""
    for log_dir in tables.rglob("_delta_log"):
        if "rows" in str(log_dir.parent.relative_to(tables)):
            return DeltaTable(str(log_dir.parent)).version()
    return -1


def _worker_restarts(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "process exited name=" in line]


def test_kill_9_of_the_broker_during_writes_loses_and_duplicates_nothing(
    tmp_path: Path, ups: list[Up]
) -> None:
    env = up_env(free_port(), WALVUS_SEAL_IDLE_SECONDS="1", WALVUS_SEAL_MAX_ROWS="500")
    up, uri = _start(tmp_path, env, 1)
    ups.append(up)
    admin = MilvusClient(uri)
    admin.create_collection("w", dimension=DIM)
    writer = Writer(uri, "w")
    writer.start()
    writer.wait_batches(20)
    data_dir = tmp_path / "data"
    old = _broker_pid(data_dir)
    os.killpg(old, signal.SIGKILL)  # the broker runs in its own session
    deadline = time.monotonic() + 120
    while not (data_dir / "kafka" / "kafka.pid").exists() or _broker_pid(data_dir) == old:
        assert time.monotonic() < deadline, "walvus up did not start the broker again"
        time.sleep(0.2)
    up.pids.append(_broker_pid(data_dir))
    writer.wait_batches(20)  # writes go on through the restarted broker
    writer.stop.set()
    writer.join(60)
    admin.close()
    _check_exactly_once(uri, "w", writer, data_dir / "tables")
    assert _worker_restarts(tmp_path / "up1.log") == [], "a worker died with the broker"
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(120) == 0


def test_kill_9_of_the_whole_deployment_during_writes_loses_and_duplicates_nothing(
    tmp_path: Path, ups: list[Up]
) -> None:
    env = up_env(free_port(), WALVUS_SEAL_IDLE_SECONDS="1", WALVUS_SEAL_MAX_ROWS="500")
    first, uri = _start(tmp_path, env, 1)
    ups.append(first)
    admin = MilvusClient(uri)
    admin.create_collection("w", dimension=DIM)
    admin.close()
    writer = Writer(uri, "w")
    writer.start()
    data_dir = tmp_path / "data"
    deadline = time.monotonic() + 120
    while _rows_versions(data_dir / "tables") < 3:  # segments sealed (by rows) under the running writes
        assert time.monotonic() < deadline, "nothing was committed to Delta"
        time.sleep(0.2)
    writer.wait_batches(5)
    committed = _rows_versions(data_dir / "tables")
    broker = _broker_pid(data_dir)
    os.killpg(first.proc.pid, signal.SIGKILL)  # walvus up and its workers: one process group
    os.killpg(broker, signal.SIGKILL)
    first.proc.wait()
    deadline = time.monotonic() + 30
    while not all(gone(p) for p in [broker, *first.pids]):
        assert time.monotonic() < deadline, "a process survived kill -9"
        time.sleep(0.1)
    writer.stop.set()
    writer.join(120)
    assert not writer.is_alive(), "the writer is still waiting on the killed deployment"
    assert writer.acked, "nothing was acknowledged before the kill"

    second, uri2 = _start(tmp_path, env, 2)
    ups.append(second)
    assert uri2 == uri
    _check_exactly_once(uri, "w", writer, data_dir / "tables")  # the replay skipped what was committed
    assert _rows_versions(data_dir / "tables") > committed
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(120) == 0
