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
