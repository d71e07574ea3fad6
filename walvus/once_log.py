"""Log a repeating failure once per distinct error, not on every retry."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any


class OnceLog:
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._seen: set[tuple[str, str]] = set()

    def error(self, what: str, exc: BaseException, **fields: Any) -> bool:
        """Log ``what`` with the error and its traceback the first time; True when it was logged."""
        key = (what, f"{type(exc).__name__}: {exc}")
        if key in self._seen:
            return False
        self._seen.add(key)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        self.logger.error("%s %serror=%s", what, f"{extra} " if extra else "", key[1], exc_info=exc)
        return True

    def clear(self) -> None:
        """Things work again: the next failure is news."""
        self._seen.clear()


_NUMBERS = re.compile(r"\d+")
NOISY_LOGGERS = (
    "rdkafka",
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.consumer.fetcher",
    "aiokafka.producer.sender",
)


class RepeatFilter(logging.Filter):
    """Let a line through once per ``every`` seconds; the repeats in between are counted and the
    count goes on the next one let through. While a broker is down, librdkafka and aiokafka log
    the same refused connection many times a second in every process."""

    def __init__(self, every: float = 30.0, most: int = 1000) -> None:
        super().__init__()
        self.every = every
        self.most = most
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = (record.name, record.levelno, _NUMBERS.sub("#", text))
        now = time.monotonic()
        with self._lock:
            seen, skipped = self._last.get(key, (-self.every, 0))
            if now - seen < self.every:
                self._last[key] = (seen, skipped + 1)
                return False
            if len(self._last) >= self.most:
                self._last.clear()
            self._last[key] = (now, 0)
        if skipped:
            record.msg, record.args = f"{text} (and {skipped} times more in {self.every:.0f}s)", ()
        return True


def quiet_repeats(names: tuple[str, ...] = NOISY_LOGGERS, every: float = 30.0) -> None:
    """Install one ``RepeatFilter`` on each of these loggers (a logger's filters see only its own lines)."""
    shared = RepeatFilter(every)
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
