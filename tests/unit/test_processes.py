"""Stopping: signals that land while the main thread is inside an Event, and child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from walvus.processes import on_stop_signal, stop_processes


def test_repeated_sigterm_during_event_waits_stops_once_without_deadlock():
    stop = threading.Event()
    calls = []

    def callback() -> None:
        calls.append(1)
        stop.set()

    previous = on_stop_signal(callback)
    try:
        busy = threading.Event()
        deadline = time.monotonic() + 10
        sent = 0
        # signals that land inside Event.set/wait on the main thread: the shape that deadlocked
        while not stop.is_set() and time.monotonic() < deadline:
            busy.set()
            busy.clear()
            busy.wait(0.0001)
            if sent < 3:
                os.kill(os.getpid(), signal.SIGTERM)
                sent += 1
        assert stop.wait(5)
        time.sleep(0.2)
        assert calls == [1]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_stop_processes_kills_what_ignores_sigterm():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stubborn.stdout is not None and stubborn.stdout.readline()  # its SIGTERM handler is set
    stop_processes([stubborn, polite], timeout=1)
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL


def test_a_child_started_with_die_with_parent_gets_sigterm_when_its_parent_is_killed():
    """``walvus up``'s broker and workers must not outlive it, even after ``kill -9``."""
    code = (
        "import subprocess, sys; from walvus.processes import die_with_parent; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
        "preexec_fn=die_with_parent()); print(c.pid, flush=True); c.wait()"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": root}
    )
    child = int(parent.stdout.readline())
    try:
        parent.kill()  # SIGKILL: no handler, no atexit, no cleanup of its own
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
