"""Stopping: child processes (SIGTERM to all, then wait, then SIGKILL what is left), and this
process on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Any


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
            p.wait()


def on_stop_signal(
    callback: Callable[[], None], signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)
) -> dict[int, Any]:
    """Call ``callback`` once, in a thread of its own, when one of ``signals`` arrives.

    A Python signal handler runs in the main thread between two bytecodes, possibly while
    that thread holds a lock, so it must not take one: ``Event.set`` in a handler deadlocks
    when the signal lands inside another ``Event`` call (seen: a gateway that got SIGTERM
    twice hung for good). This handler only writes a byte to a pipe; the thread blocked on
    the pipe's other end calls ``callback``. Returns the handlers it replaced.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def handler(signum: int, frame: object) -> None:
        try:
            os.write(write_end, b"\0")
        except BlockingIOError:  # the pipe is full of earlier signals: this one changes nothing
            pass

    def watch() -> None:
        os.read(read_end, 1)
        callback()

    threading.Thread(target=watch, name="stop-signal", daemon=True).start()
    return {sig: signal.signal(sig, handler) for sig in signals}
