"""Run ``walvus up`` as a user would, for the tests that kill it or its parts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.ports import free_port, listening

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
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
        self.log = log
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


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "walvus up exited"
        if listening(port):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing answers on port {port}")


def wait_serving(uri: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the gateway at ``uri`` answers an RPC. An open port is not enough: on a port in the
    ephemeral range a connect can meet itself (TCP simultaneous open) while nothing listens."""
    from pymilvus import MilvusClient, MilvusException

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "walvus up exited"
        try:
            client = MilvusClient(uri, timeout=10, dedicated=True)
            try:
                client.list_collections()
                return
            finally:
                client.close()
        except MilvusException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def survivors(pids: list[int], timeout: float = 60) -> list[int]:
    """The pids still running once they all exited or ``timeout`` passed (SIGTERM-ed processes
    shut down cleanly, which takes a moment)."""
    deadline = time.monotonic() + timeout
    while any(not gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if not gone(p)]


def up_env(gateway_port: int, **extra: str) -> dict[str, str]:
    """The environment of a ``walvus up`` with a broker of its own and a namespace of its own."""
    return {
        **{k: v for k, v in os.environ.items() if "BOOTSTRAP_SERVERS" not in k},
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "WALVUS_KAFKA_PORT": str(_kafka_port()),
        "WALVUS_PORT": str(gateway_port),
        "WALVUS_METRICS_PORT": "0",
        "WALVUS_REST_PORT": "0",  # several ups at once must not all want 19531
        "WALVUS_NAMESPACE": f"up{uuid.uuid4().hex[:8]}",
        **extra,
    }
