"""Shared fixtures. Integration tests use a real single-node Kafka (or KAFKA_BOOTSTRAP_SERVERS),
real Delta tables under tmp_path, real walvus processes and the real pymilvus client."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.up_support import Up, gone
from tests.procs import Deployment

if TYPE_CHECKING:
    from tests.s3 import S3Server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that ran ``walvus up`` gets the tails of its processes' logs in its report:
    CI keeps nothing else of a deployment that died."""
    outcome = yield
    report = outcome.get_result()
    ups = getattr(item, "funcargs", {}).get("ups")
    if report.when != "call" or not report.failed or not ups:
        return
    for n, up in enumerate(ups, 1):
        for log_file in [up.log, *sorted((up.data_dir / "logs").glob("*.log"))]:
            if not log_file.exists():
                continue
            lines = log_file.read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"walvus up #{n}: {log_file.name} (last 40 lines)", "\n".join(lines)))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A broker for the whole session. A missing broker fails the tests; it never skips them."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    from tests.ports import free_port
    from walvus.kafka import LocalKafka

    root = Path(tempfile.mkdtemp(prefix="walvus-kafka-"))
    broker = LocalKafka(root, port=free_port(), controller_port=free_port())
    bootstrap = broker.start(timeout=120)
    yield bootstrap
    broker.stop()


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """A walvus deployment of its own: a unique namespace (topics) and data directory."""
    dep = Deployment(kafka_bootstrap, tmp_path)
    for k, v in dep.env.items():
        monkeypatch.setenv(k, v)
    yield dep
    dep.close()


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    """``walvus up`` processes a test starts; whatever is left of them is killed afterwards."""
    started: list[Up] = []
    yield started
    for up in started:  # whatever is left of the processes this test started
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()
        for pid in up.pids:
            if not gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3 server (moto) for the whole session; each test takes a bucket of its own."""
    from tests.s3 import s3_server  # moto is imported by the tests that use it only

    with s3_server() as server:
        yield server
