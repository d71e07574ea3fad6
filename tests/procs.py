"""Run walvus processes for integration tests: start, SIGKILL, restart, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.ports import free_port, listening

SEARCHERS = ("searcher-a", "searcher-b")
REMOTE_ENV = {"WALVUS_SEARCHERS": "remote", "WALVUS_SEARCHER_SESSION_TIMEOUT_MS": "6000"}
LAYOUTS = ("local", "remote")  # the searcher inside the gateway; two searcher processes


class Deployment:
    def __init__(self, bootstrap: str, root: Path, **settings: str) -> None:
        self.bootstrap = bootstrap
        self.root = root
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "WALVUS_NAMESPACE": self.namespace,
            "WALVUS_DATA_DIR": str(root / "data"),
            "WALVUS_PORT": str(self.port),
            "WALVUS_METRICS_PORT": str(free_port()),
            "WALVUS_REST_PORT": str(free_port()),
            "WALVUS_INDEXER_METRICS_PORT": str(free_port()),
            "WALVUS_SEAL_IDLE_SECONDS": "3",
            # segments change under a test only where it asks for compaction (test_compaction.py)
            "WALVUS_COMPACTION_CHECK_SECONDS": "3600",
            "WALVUS_SITE": self.namespace,
            **settings,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.layout = "local"
        self._api: Any = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *names: str) -> None:
        for name in names:
            self.start_as(name, name)
        if "gateway" in names:
            self.wait_gateway()

    def start_all(self, layout: str = "local") -> None:
        """Every walvus process: with ``remote``, two ``walvus searcher`` processes serve the reads
        and the gateway scatters them (``WALVUS_SEARCHERS=remote``)."""
        self.layout = layout
        self.start("streams", "indexer")
        if layout == "remote":
            self.env.update(REMOTE_ENV)
            for key in SEARCHERS:
                self.start_as(key, "searcher")
        self.start("gateway")

    def stop_all(self) -> None:
        for name in ("gateway", *SEARCHERS, "indexer", "streams"):
            if name in self.procs:
                self.stop(name)

    def start_as(self, key: str, command: str, **env: str) -> None:
        """``walvus <command>`` known as ``key`` (several searchers), with extra settings."""
        log = open(self.root / f"{key}.log", "ab")  # noqa: SIM115
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", "walvus", command],
            env={**os.environ, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_gateway(self, timeout: float = 90) -> None:
        """The gateway opens its port only once it is ready to serve."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs["gateway"]
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited rc={proc.returncode}:\n{self.log_tail('gateway')}")
            if listening(self.port):
                return
            time.sleep(0.2)
        raise TimeoutError(f"gateway did not answer in {timeout}s:\n{self.log_tail('gateway')}")

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str, timeout: float = 30) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def api(self) -> Any:
        if self._api is None:
            from unittest import mock

            from walvus.api import Walvus

            with mock.patch.dict(os.environ, self.env):  # this deployment's namespace and data dir
                self._api = Walvus.connect(self.bootstrap)
        return self._api

    def close(self) -> None:
        for name in list(self.procs):
            try:
                self.stop(name, timeout=10)
            except Exception:
                pass
        if self._api is not None:
            self._api.close()
