"""A ``walvus.clock.Clock`` that moves only when a test moves it."""

from __future__ import annotations


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1_000.0) -> None:
        self.wall = wall
        self.mono = monotonic

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward: wall and monotonic time pass alike."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        self.wall += seconds
        self.mono += seconds
