"""A failure that repeats is logged once per distinct error, and again once things worked."""

from __future__ import annotations

import logging

import pytest

from walvus.once_log import OnceLog, RepeatFilter


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


def test_repeated_lines_are_let_through_once_per_period_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("walvus.once_log.time.monotonic", lambda: clock[0])
    logger = logging.getLogger("test.repeats")
    logger.addFilter(RepeatFilter(every=30))
    with caplog.at_level(logging.ERROR, logger="test.repeats"):
        for ms in range(50):  # the same refused connect, differing only in its numbers
            logger.error("Connect to 127.0.0.1:%d failed (after %dms in state CONNECT)", 9092, ms)
        logger.error("Group Coordinator Request failed")  # another line: let through at once
        clock[0] += 31
        logger.error("Connect to 127.0.0.1:%d failed (after %dms in state CONNECT)", 9092, 7)
    assert [r.getMessage() for r in caplog.records] == [
        "Connect to 127.0.0.1:9092 failed (after 0ms in state CONNECT)",
        "Group Coordinator Request failed",
        "Connect to 127.0.0.1:9092 failed (after 7ms in state CONNECT) (and 49 times more in 30s)",
    ]
