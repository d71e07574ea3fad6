"""TIMESTAMPTZ text, zones, intervals and filters against Python's datetime."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from schemas.exceptions import InvalidArgument, ValidationError
from schemas.filters import FilterError, FilterField, FilterSchema, compile_filter
from schemas.timestamptz import check_zone, format_iso, parse_interval, parse_iso, shift, zone_of

TEXTS = [
    "2025-01-01T00:00:00+08:00",
    "2025-01-31T10:00:00",
    None,
    "2025-03-10T02:30:00.25Z",
    "2024-02-29 23:59:59-05:30",
]


def _py(text: str | None, zone: str) -> dt.datetime | None:
    if text is None:
        return None
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo(zone))


def test_parse_and_format_match_datetime() -> None:
    arr = parse_iso(pa.array(TEXTS), "Asia/Shanghai")
    assert arr.type == pa.timestamp("us", tz="UTC")
    want = [_py(t, "Asia/Shanghai") for t in TEXTS]
    got = arr.to_pylist()
    assert got == [None if w is None else w.astimezone(dt.UTC) for w in want]
    out = format_iso(arr, "America/New_York").to_pylist()
    assert out == [
        None if w is None else w.astimezone(ZoneInfo("America/New_York")).isoformat() for w in want
    ]


def test_bad_text_and_zones_are_refused() -> None:
    with pytest.raises(ValidationError, match="row 1"):
        parse_iso(pa.array(["2025-01-01T00:00:00Z", "should cause an error"]), "UTC", "tsz")
    with pytest.raises(InvalidArgument, match="timezone"):
        check_zone("Mars/Olympus")
    assert zone_of(None, "", "Asia/Tokyo") == "Asia/Tokyo"
    assert zone_of() == "UTC"


@pytest.mark.parametrize(
    "text,months,micros",
    [
        ("P1Y2M", 14, 0),
        ("PT1H30M", 0, 5_400_000_000),
        ("-P1DT0.5S", 0, -86_400_500_000),
        ("P2W", 0, 14 * 86_400_000_000),
    ],
)
def test_intervals(text: str, months: int, micros: int) -> None:
    assert parse_interval(text) == (months, micros)


def test_interval_refusals() -> None:
    for bad in ("P", "PT", "1D", "P1H"):
        with pytest.raises(InvalidArgument):
            parse_interval(bad)


def test_shift_by_months_clamps_to_month_end() -> None:
    base = [
        dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC),
        dt.datetime(2024, 2, 29, tzinfo=dt.UTC),
        dt.datetime(2025, 12, 15, 1, 2, 3, 4, tzinfo=dt.UTC),
    ]
    micros = np.array([int(t.timestamp() * 1_000_000) for t in base])
    got = [dt.datetime.fromtimestamp(v / 1e6, dt.UTC) for v in shift(micros, 1, 0)]
    assert got == [
        dt.datetime(2025, 2, 28, 10, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 29, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 15, 1, 2, 3, 4, tzinfo=dt.UTC),
    ]
    back = shift(micros, -12, 3_600_000_000)
    assert dt.datetime.fromtimestamp(back[1] / 1e6, dt.UTC) == dt.datetime(2023, 2, 28, 1, tzinfo=dt.UTC)


def test_filters_with_iso_and_interval() -> None:
    schema = FilterSchema.of([FilterField("id", "INT64"), FilterField("tsz", "TIMESTAMPTZ", nullable=True)])
    table = pa.table(
        {
            "id": [0, 1, 2],
            "tsz": parse_iso(
                pa.array(["2025-01-01T00:00:00+08:00", "2025-01-03T00:00:00+08:00", None]), "UTC"
            ),
        }
    )
    cases = {
        "tsz > ISO '2025-01-02T00:00:00+08:00'": [False, True, False],
        "tsz + INTERVAL 'P1D' == ISO '2025-01-02T00:00:00+08:00'": [True, False, False],
        "tsz + INTERVAL 'P0D' != ISO '2025-01-03T00:00:00+08:00'": [True, False, False],
        "tsz - INTERVAL 'P1M' < ISO '2024-12-01T00:00:00Z'": [True, False, False],
        "tsz in [ISO '2025-01-01T00:00:00+08:00']": [True, False, False],
        "not (tsz <= ISO '2025-01-01T00:00:00+08:00')": [False, True, False],
    }
    for expr, want in cases.items():
        assert compile_filter(expr, schema).evaluate(table).tolist() == want, expr
    for bad in (
        "tsz > 5",
        "tsz + 1 > ISO '2025-01-01T00:00:00Z'",
        "tsz > ISO 'garbage'",
        "INTERVAL 'P1D' - tsz > ISO '2025-01-01T00:00:00Z'",
    ):
        with pytest.raises(FilterError):
            compile_filter(bad, schema)
