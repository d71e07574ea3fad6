"""When a growing segment is sealed: size (Milvus segment.maxSize x sealProportion), idleness, flush."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SealPolicy:
    max_bytes: int = int(1024 * 0.12 * 1024 * 1024)
    idle_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.idle_seconds <= 0:
            raise ValueError("seal thresholds must be positive")

    def reason(self, nbytes: int, idle_for: float) -> str | None:
        """Why this buffer should be sealed now, or None."""
        if nbytes >= self.max_bytes:
            return "size"
        if nbytes > 0 and idle_for >= self.idle_seconds:
            return "idle"
        return None
