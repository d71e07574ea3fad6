"""Strong reads share end-position lookups, but only lookups that started after they arrived."""

from __future__ import annotations

import threading
import time

from searcher.positions import EndPositions


def test_sequential_calls_each_look_up():
    calls = []
    ep = EndPositions(lambda t, n: calls.append(t) or [len(calls)] * n)
    assert ep.after_now("w", 2) == [1, 1]
    assert ep.after_now("w", 2) == [2, 2]
    assert len(calls) == 2


def test_concurrent_calls_share_a_lookup_started_after_they_arrived():
    started = []
    gate = threading.Event()

    def slow(topic, n):
        started.append(time.monotonic())
        gate.wait(1)
        return [len(started)] * n

    ep = EndPositions(slow)
    out: dict[int, tuple[float, list[int]]] = {}

    def call(i):
        t0 = time.monotonic()
        out[i] = (t0, ep.after_now("w", 1))

    first = threading.Thread(target=call, args=(0,))
    first.start()
    time.sleep(0.05)  # the first lookup is in flight; these must not reuse it
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for th in others:
        th.start()
    time.sleep(0.05)
    gate.set()
    for th in [first, *others]:
        th.join(5)
    assert out[0][1] in ([1], [2])  # its own lookup, or a later one if that finished first
    assert all(out[i][1] == [2] for i in range(1, 6))  # one shared second lookup
    assert len(started) == 2
    for i in range(1, 6):
        assert started[1] >= out[i][0]  # the shared lookup began after each caller arrived


def test_errors_reach_every_waiter():
    def boom(topic, n):
        raise RuntimeError("broker down")

    ep = EndPositions(boom)
    try:
        ep.after_now("w", 1)
    except RuntimeError as exc:
        assert "broker down" in str(exc)
    else:
        raise AssertionError("no error")


def test_a_request_returns_before_its_lookup_finishes():
    gate = threading.Event()
    ep = EndPositions(lambda t, n: gate.wait(1) and [7] * n)
    pending = ep.request("w", 2)  # returns at once: the caller searches meanwhile
    assert ep.last_known("w") is None
    gate.set()
    assert pending.result() == [7, 7]
    assert ep.last_known("w") == [7, 7]
