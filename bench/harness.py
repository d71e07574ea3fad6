"""Shared benchmark plumbing: a throwaway local deployment, tables, and results on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from walvus.processes import stop_processes

RESULTS = Path(__file__).parent / "results"
console = Console()


@contextmanager
def local_deployment(procs: tuple[str, ...] = ("streams",), **env: str) -> Iterator[dict[str, str]]:
    """A broker (or KAFKA_BOOTSTRAP_SERVERS), a fresh namespace and data dir, and walvus processes."""
    from walvus.kafka import LocalKafka, free_port

    root = Path(tempfile.mkdtemp(prefix="walvus-bench-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalKafka(root / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
        bootstrap = broker.start(timeout=120)
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "WALVUS_NAMESPACE": f"b{uuid.uuid4().hex[:8]}",
        "WALVUS_DATA_DIR": str(root / "data"),
        "WALVUS_PORT": str(free_port()),
        "WALVUS_METRICS_PORT": str(free_port()),
        **env,
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    running = []
    for name in procs:
        log = open(root / f"{name}.log", "ab")  # noqa: SIM115
        running.append(
            subprocess.Popen(
                [sys.executable, "-m", "walvus", name],
                env={**os.environ},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield settings
    finally:
        stop_processes(running)
        if broker is not None:
            broker.stop()
        for k, v in saved.items():  # a later deployment in this process must not reuse this broker
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        t.add_row(
            *[
                f"{v:,.0f}"
                if isinstance(v, float) and v >= 100
                else f"{v:.3g}"
                if isinstance(v, float)
                else str(v)
                for v in r
            ]
        )
    console.print(t)


def save(name: str, data: Any) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "data": data}, indent=2))
    return path


def wanted_targets(spec: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated targets of ``--targets``, each one of ``known``."""
    wanted = [t.strip() for t in spec.split(",") if t.strip()]
    for t in wanted:
        if t not in known:
            raise SystemExit(f"unknown target {t!r}; choose from {', '.join(known)}")
    return wanted


def clustered_dataset(rows: int, dim: int) -> Any:
    """The clustered dataset, announced on the console (and the console widened for a log file)."""
    from bench.datasets import clustered

    if not console.is_terminal:  # a log file or pipe: wide enough that the tables do not wrap
        console.width = max(console.width, 170)
    with console.status("dataset: synthetic clustered (cached under bench/.data/) ..."):
        ds = clustered(rows, dim)
    console.print(f"dataset {ds.name}: {ds.description}")
    return ds
