"""Stopping child processes: SIGTERM to all, then wait, then SIGKILL what is left."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable


def stop_processes(procs: Iterable[subprocess.Popen], timeout: float = 20.0) -> None:
    """Terminate every process at once, give each ``timeout`` seconds to exit, then kill it."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
