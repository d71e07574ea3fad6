"""When a growing segment is sealed: size (Milvus segment.maxSize x sealProportion), row count,
age (Milvus's segment max lifetime), idleness, or a flush.

Under continuous writes a buffer is never idle, so without the row and age limits it would
grow until the size limit (about 123 MB); seals by rows and age keep growing data small.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SealPolicy:
    max_bytes: int = int(1024 * 0.12 * 1024 * 1024)
    idle_seconds: float = 10.0
    max_rows: int = 100_000
    max_age_seconds: float = 300.0

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.idle_seconds, self.max_rows, self.max_age_seconds) <= 0:
            raise ValueError("seal thresholds must be positive")

    def reason(self, nbytes: int, idle_for: float, rows: int = 0, age: float = 0.0) -> str | None:
        """Why this buffer should be sealed now, or None (``age``: seconds since its first record)."""
        if nbytes >= self.max_bytes:
            return "size"
        if rows >= self.max_rows:
            return "rows"
        if nbytes > 0 and age >= self.max_age_seconds:
            return "age"
        if nbytes > 0 and idle_for >= self.idle_seconds:
            return "idle"
        return None

    def full(self, nbytes: int, rows: int) -> bool:
        """Sealed at once, as the record that filled it arrives (size or rows)."""
        return nbytes >= self.max_bytes or rows >= self.max_rows
