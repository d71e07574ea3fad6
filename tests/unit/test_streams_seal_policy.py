"""When a growing segment is sealed: size, row count, age, idleness, or not at all."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.wal import Op, WalHeader, WalRecord
from streams.growing import GrowingBuffer
from streams.seal_policy import SealPolicy


def test_default_is_milvus_segment_size_times_seal_proportion() -> None:
    p = SealPolicy()
    assert p.max_bytes == int(1024 * 0.12 * 1024 * 1024)
    assert p.idle_seconds == 10.0
    assert (p.max_rows, p.max_age_seconds) == (100_000, 300.0)


@pytest.mark.parametrize(
    "nbytes, idle_for, reason",
    [
        (1000, 0.0, "size"),  # exactly at the threshold
        (5000, 0.0, "size"),
        (5000, 99.0, "size"),  # size wins over idleness
        (999, 5.0, "idle"),  # exactly idle long enough
        (1, 100.0, "idle"),
        (999, 4.99, None),
        (0, 1e9, None),  # an empty buffer is never sealed for idleness
        (0, 0.0, None),
    ],
)
def test_reasons(nbytes: int, idle_for: float, reason: str | None) -> None:
    assert SealPolicy(max_bytes=1000, idle_seconds=5.0).reason(nbytes, idle_for) == reason


@pytest.mark.parametrize(
    "nbytes, idle_for, rows, age, reason",
    [
        (10, 0.0, 50, 0.0, "rows"),  # under continuous writes: never idle, sealed by rows
        (10, 0.0, 49, 30.0, "age"),  # or by age
        (1000, 0.0, 50, 30.0, "size"),  # size first
        (10, 6.0, 49, 29.0, "idle"),
        (10, 0.0, 49, 29.9, None),
        (0, 0.0, 0, 99.0, None),  # nothing buffered: no age
    ],
)
def test_rows_and_age_seal_under_continuous_writes(nbytes, idle_for, rows, age, reason) -> None:
    p = SealPolicy(max_bytes=1000, idle_seconds=5.0, max_rows=50, max_age_seconds=30.0)
    assert p.reason(nbytes, idle_for, rows, age) == reason
    assert p.full(nbytes, rows) == (reason in ("rows", "size"))


@pytest.mark.parametrize(
    "kw",
    [
        {"max_bytes": 0},
        {"max_bytes": -1},
        {"idle_seconds": 0},
        {"idle_seconds": -2.0},
        {"max_rows": 0},
        {"max_age_seconds": 0},
    ],
)
def test_thresholds_must_be_positive(kw: dict) -> None:
    with pytest.raises(ValueError, match="positive"):
        SealPolicy(**kw)


def test_growing_buffer_counts_bytes_and_drains() -> None:
    buf = GrowingBuffer("ns.wal.1", 0)
    assert buf.last_offset == -1 and buf.nbytes == 0
    batch = pa.record_batch({"id": pa.array(range(100), pa.int64())})
    h = WalHeader(op=Op.INSERT, collection="c", collection_id=1, schema_version=1, ts=1)
    buf.add(5, WalRecord(h, batch), token="t5")
    buf.add(6, WalRecord(h.__class__(**{**h.__dict__, "op": Op.FLUSH})), token="t6")
    assert buf.nbytes == batch.nbytes and buf.last_offset == 6 and buf.rows == 100
    assert buf.idle_for(buf.last_add + 3.0) == pytest.approx(3.0)
    assert buf.age(buf.first_add + 7.0) == pytest.approx(7.0)
    out = buf.drain()
    assert [r.offset for r in out] == [5, 6] and [r.token for r in out] == ["t5", "t6"]
    assert buf.records == [] and buf.nbytes == 0 and buf.last_offset == -1 and buf.rows == 0
    assert buf.age(1e9) == 0.0
