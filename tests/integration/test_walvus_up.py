"""``walvus up`` killed by ``kill -9`` leaves nothing behind that blocks the next ``walvus up``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from tests.integration.up_support import ROOT, Up, gone, survivors, up_env, wait_port
from tests.ports import free_port
from walvus.kafka import LocalKafka
from walvus.kafka import free_port as kafka_free_port

pytestmark = pytest.mark.integration


def test_walvus_up_comes_back_after_kill_9_on_the_same_data_dir_and_port(
    tmp_path: Path, ups: list[Up]
) -> None:
    gateway_port = free_port()
    env = up_env(gateway_port)
    data_dir = tmp_path / "data"
    first = Up(data_dir, env, tmp_path / "up1.log")
    ups.append(first)
    uri = first.wait_up()
    wait_port(gateway_port, first.proc)
    first.proc.send_signal(signal.SIGKILL)  # the launcher only: its children are left to fend for themselves
    first.proc.wait()

    second = Up(data_dir, env, tmp_path / "up2.log")
    ups.append(second)
    assert second.wait_up() == uri
    wait_port(gateway_port, second.proc)
    client = MilvusClient(uri)
    try:
        client.create_collection("after_kill", dimension=4)
        client.insert("after_kill", [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
        got = client.query("after_kill", filter="id == 1", consistency_level="Strong")
        assert [r["id"] for r in got] == [1]
    finally:
        client.close()
    # nothing of the killed walvus up outlived it: broker, streams, indexer and gateway are gone
    assert survivors(first.pids) == []
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(120) == 0
    assert survivors(second.pids) == []


def test_a_stale_broker_of_the_same_data_dir_is_stopped_on_start(tmp_path: Path) -> None:
    """A broker whose launcher died without taking it along (no die_with_launcher, or an older
    walvus) is stopped by the next start on that data dir, instead of 'port in use'."""
    port, cport = kafka_free_port(), kafka_free_port()
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from walvus.kafka import LocalKafka; "
            "k = LocalKafka(Path(sys.argv[1]), port=int(sys.argv[2]), controller_port=int(sys.argv[3])); "
            "print(k.start(timeout=120), flush=True); time.sleep(3600)",
            str(tmp_path / "kafka"),
            str(port),
            str(cport),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    stale_pid = None
    kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=cport)
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline().decode().strip() == f"127.0.0.1:{port}"
        stale_pid = int(kafka.pid_file.read_text())
        launcher.kill()  # SIGKILL: its atexit hook never runs, the broker (own session) lives on
        launcher.wait()
        assert not gone(stale_pid)
        assert kafka.start(timeout=120) == f"127.0.0.1:{port}"
        assert gone(stale_pid) and kafka.pid != stale_pid
    finally:
        kafka.kill()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        if stale_pid is not None and not gone(stale_pid):
            os.killpg(stale_pid, signal.SIGKILL)
