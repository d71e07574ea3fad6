"""A failure that repeats is logged once per distinct error, and again once things worked."""

from __future__ import annotations

import logging

import pytest

from walvus.once_log import OnceLog


def test_each_distinct_error_is_logged_once_until_cleared(caplog: pytest.LogCaptureFixture) -> None:
    once = OnceLog(logging.getLogger("test.once"))
    with caplog.at_level(logging.ERROR, logger="test.once"):
        assert once.error("idle seal failed", OSError("disk full"), shards=2)
        assert not once.error("idle seal failed", OSError("disk full"), shards=2)
        assert once.error("idle seal failed", OSError("bucket gone"))
        once.clear()
        assert once.error("idle seal failed", OSError("disk full"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "idle seal failed shards=2 error=OSError: disk full",
        "idle seal failed error=OSError: bucket gone",
        "idle seal failed error=OSError: disk full",
    ]
    assert all(r.exc_info for r in caplog.records)
