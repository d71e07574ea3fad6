"""Stopping: child processes (SIGTERM to all, then wait, then SIGKILL what is left), and this
process on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when this thread's process dies, even by ``kill -9``.

    Linux only (elsewhere a no-op). The signal follows the thread that starts the child, so
    start children that must not outlive this process from the main thread. libc is loaded
    here, in the parent: the child only makes the system call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os.kill(os.getpid(), sig)

    return preexec


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
