"""Log a repeating failure once per distinct error, not on every retry."""

from __future__ import annotations

import logging
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
