"""The clock components decide by: the system's, and the fake one tests move by hand."""

from __future__ import annotations

import time

import pytest

from tests.clock import FakeClock
from walvus.clock import SYSTEM_CLOCK, Clock, now_ms


def test_the_system_clock_reads_the_process_clocks() -> None:
    before_wall, before_mono = time.time(), time.monotonic()
    assert before_wall <= SYSTEM_CLOCK.now() <= time.time()
    assert before_mono <= SYSTEM_CLOCK.monotonic() <= time.monotonic()


def test_the_fake_clock_moves_only_when_told() -> None:
    clock: Clock = FakeClock(wall=100.0, monotonic=5.0)
    assert (clock.now(), clock.monotonic(), now_ms(clock)) == (100.0, 5.0, 100_000)
    clock.sleep(2.5)  # a fake sleep is a step forward, at once
    assert (clock.now(), clock.monotonic()) == (102.5, 7.5)
    with pytest.raises(ValueError, match="does not go back"):
        FakeClock().advance(-1)
