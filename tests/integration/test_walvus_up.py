"""``walvus up`` killed by ``kill -9`` leaves nothing behind that blocks the next ``walvus up``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from tests.ports import free_port
from walvus.kafka import LocalKafka
from walvus.kafka import free_port as kafka_free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """Exited (reaped, or a zombie waiting for init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kafka_port() -> int:
    """A port for the broker whose controller port (port + 100, as ``walvus up`` uses) is free too."""
    while True:
        port = free_port()
        if port + 100 < 65536 and _free(port + 100):
            return port


class Up:
    """One ``walvus up`` process; remembers every pid it reports, to clean up after the test."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.data_dir = data_dir
        self.pids: list[int] = []
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "walvus", "up", "--data-dir", str(data_dir)],
                env=env,
                cwd=data_dir.parent,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )

    def wait_up(self) -> str:
        """Read what ``walvus up`` prints until it says how to connect; returns the URI."""
        assert self.proc.stdout is not None
        lines = []
        for raw in self.proc.stdout:
            line = raw.decode()
            lines.append(line)
            self.pids += [int(p) for p in re.findall(r"pid (\d+)", line)]
            found = re.search(r'MilvusClient\("([^"]+)"\)', line)
            if found:
                self.pids.append(int((self.data_dir / "kafka" / "kafka.pid").read_text()))
                return found[1]
        raise AssertionError(f"walvus up exited rc={self.proc.wait()}:\n{''.join(lines)}")


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "walvus up exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing answers on port {port}")


def _survivors(pids: list[int], timeout: float = 60) -> list[int]:
    """The pids still running once they all exited or ``timeout`` passed (SIGTERM-ed processes
    shut down cleanly, which takes a moment)."""
    deadline = time.monotonic() + timeout
    while any(not _gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if not _gone(p)]


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:  # whatever is left of the processes this test started
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()
        for pid in up.pids:
            if not _gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_walvus_up_comes_back_after_kill_9_on_the_same_data_dir_and_port(
    tmp_path: Path, ups: list[Up]
) -> None:
    gateway_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if "BOOTSTRAP_SERVERS" not in k},
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "WALVUS_KAFKA_PORT": str(_kafka_port()),
        "WALVUS_PORT": str(gateway_port),
        "WALVUS_METRICS_PORT": "0",
        "WALVUS_NAMESPACE": f"up{uuid.uuid4().hex[:8]}",
    }
    data_dir = tmp_path / "data"
    first = Up(data_dir, env, tmp_path / "up1.log")
    ups.append(first)
    uri = first.wait_up()
    _wait_port(gateway_port, first.proc)
    first.proc.send_signal(signal.SIGKILL)  # the launcher only: its children are left to fend for themselves
    first.proc.wait()

    second = Up(data_dir, env, tmp_path / "up2.log")
    ups.append(second)
    assert second.wait_up() == uri
    _wait_port(gateway_port, second.proc)
    client = MilvusClient(uri)
    try:
        client.create_collection("after_kill", dimension=4)
        client.insert("after_kill", [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
        got = client.query("after_kill", filter="id == 1", consistency_level="Strong")
        assert [r["id"] for r in got] == [1]
    finally:
        client.close()
    # nothing of the killed walvus up outlived it: broker, streams, indexer and gateway are gone
    assert _survivors(first.pids) == []
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(120) == 0
    assert _survivors(second.pids) == []


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
        assert not _gone(stale_pid)
        assert kafka.start(timeout=120) == f"127.0.0.1:{port}"
        assert _gone(stale_pid) and kafka.pid != stale_pid
    finally:
        kafka.kill()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        if stale_pid is not None and not _gone(stale_pid):
            os.killpg(stale_pid, signal.SIGKILL)
