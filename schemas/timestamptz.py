"""TIMESTAMPTZ values: ISO-8601 text in, microseconds since the epoch (UTC) stored, ISO text out.

Clients send and receive ISO-8601 strings. A string with a zone offset (``Z``, ``+08:00``) is that
instant; a string without one is read in the collection's time zone (its ``timezone`` property,
else its database's, else UTC). Stored values are Arrow ``timestamp[us, tz=UTC]`` (Delta type
``timestamp``), so every Delta/Parquet reader sees a real UTC timestamp. Output is ISO-8601 in
the request's ``timezone`` param, else the collection's, else the database's, else UTC, with the
offset written as ``+08:00`` and fractional seconds only when there are some.

Intervals (filters' ``INTERVAL 'P1Y2M3DT4H5M6.5S'``) are ISO-8601 durations; years and months
move along the calendar (clamped to the month's last day, in UTC), the rest is a fixed length.

>>> parse_interval("P1DT2H")
(0, 93600000000)
"""

from __future__ import annotations

import re
import zoneinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.exceptions import InvalidArgument, ValidationError

ARROW_TYPE = pa.timestamp("us", tz="UTC")
PROPERTY = "timezone"
_OFFSET = r"\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$"
_DURATION = re.compile(
    r"^([+-])?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$",
    re.I,
)
_US = {"W": 7 * 86_400_000_000, "D": 86_400_000_000, "H": 3_600_000_000, "MIN": 60_000_000}


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Asia/Shanghai``, ``UTC``); else InvalidArgument."""
    try:
        zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidArgument(
            f"invalid timezone {name!r}: expected an IANA time zone such as Asia/Shanghai"
        ) from None
    return str(name)


def zone_of(*candidates: object) -> str:
    """The first time zone given (request, collection, database), else UTC."""
    for c in candidates:
        if c:
            return check_zone(str(c))
    return "UTC"


def parse_iso(values: pa.Array, zone: str, field: str = "") -> pa.Array:
    """ISO-8601 strings as ``timestamp[us, UTC]``; naive strings are read in ``zone``."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    if pa.types.is_timestamp(arr.type):
        return arr.cast(ARROW_TYPE)
    if not pa.types.is_string(arr.type) and arr.null_count != len(arr):
        raise ValidationError(f"field {field!r} expects TIMESTAMPTZ as ISO-8601 strings", field=field)
    arr = arr.cast(pa.string())
    out = pa.nulls(len(arr), ARROW_TYPE)
    try:
        zoned = pc.match_substring_regex(arr, pattern=_OFFSET)
        aware = pc.fill_null(zoned, False)
        if pc.any(aware).as_py():
            out = pc.if_else(aware, _cast(arr, aware), out)
        naive = pc.and_(pc.invert(aware), arr.is_valid())
        if pc.any(naive).as_py():
            local = pc.if_else(naive, arr, pa.scalar(None, pa.string())).cast(pa.timestamp("us"))
            shifted = pc.assume_timezone(local, timezone=zone, ambiguous="earliest", nonexistent="latest")
            out = pc.if_else(naive, shifted.cast(ARROW_TYPE), out)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        row, bad = _first_bad(arr, zone)
        raise ValidationError(
            f"field {field!r}: row {row} has {bad!r}, which is not an ISO-8601 timestamp "
            f"(e.g. 2025-05-01T23:59:59+08:00)",
            field=field,
            row=row,
        ) from exc
    return out


def _cast(arr: pa.Array, aware: pa.Array) -> pa.Array:
    return pc.if_else(aware, arr, pa.scalar(None, pa.string())).cast(ARROW_TYPE)


def _first_bad(arr: pa.Array, zone: str) -> tuple[int, object]:
    """Error path only: the first row that does not parse."""
    for i, v in enumerate(arr.to_pylist()):
        if v is None:
            continue
        try:
            parse_iso(pa.array([v]), zone)
        except ValidationError:
            return i, v
        except Exception:
            return i, v
    return 0, arr[0].as_py() if len(arr) else None


def parse_one(text: str, zone: str = "UTC") -> int:
    """One ISO-8601 timestamp as microseconds since the epoch (filters' ``ISO '...'``)."""
    try:
        return int(parse_iso(pa.array([text]), zone)[0].value)
    except ValidationError:
        raise InvalidArgument(
            f"{text!r} is not an ISO-8601 timestamp (e.g. 2025-05-01T23:59:59+08:00)"
        ) from None


def format_iso(arr: pa.Array | pa.ChunkedArray, zone: str) -> pa.Array:
    """``timestamp[us, UTC]`` (or int64 microseconds) as ISO-8601 strings in ``zone``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64()).cast(ARROW_TYPE)
    local = arr.cast(pa.timestamp("us", tz=zone))
    text = pc.strftime(local, format="%Y-%m-%dT%H:%M:%S%z")
    text = pc.replace_substring_regex(text, pattern=r"\.000000", replacement="")
    return pc.replace_substring_regex(text, pattern=r"([+-]\d\d)(\d\d)$", replacement=r"\1:\2")


# what a request's ``time_fields`` may name: the components of a TIMESTAMPTZ value in the output zone
TIME_PARTS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


def parse_time_fields(text: object) -> tuple[str, ...]:
    """``time_fields`` ("year, month, day": commas or spaces) as component names, in the given order."""
    parts = tuple(p.lower() for p in re.split(r"[\s,]+", str(text or "").strip()) if p)
    bad = [p for p in parts if p not in TIME_PARTS]
    if bad or not parts or len(set(parts)) != len(parts):
        raise InvalidArgument(
            f"invalid time_fields {str(text)[:100]!r}: expected one or more of {', '.join(TIME_PARTS)} "
            f"(each once), separated by commas or spaces"
        )
    return parts


def time_parts(arr: pa.Array | pa.ChunkedArray, zone: str, parts: tuple[str, ...]) -> pa.Array:
    """Each ``timestamp[us, UTC]`` value as ``list<int64>`` of its ``parts`` read in ``zone``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64()).cast(ARROW_TYPE)
    local = arr.cast(pa.timestamp("us", tz=zone))
    columns = [_part(local, part).fill_null(0).cast(pa.int64()).to_numpy() for part in parts]
    flat = np.stack(columns, axis=1).reshape(-1) if len(arr) else np.zeros(0, np.int64)
    lists = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.int64()), len(parts))
    out = lists.cast(pa.list_(pa.int64()))
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, out.type)) if arr.null_count else out


def _part(local: pa.Array, part: str) -> pa.Array:
    if part == "microsecond":  # within the second, as datetime has it (Arrow's is within the milli)
        return pc.add(pc.multiply(pc.millisecond(local).cast(pa.int64()), 1000), pc.microsecond(local))
    return getattr(pc, part)(local)


def parse_interval(text: str) -> tuple[int, int]:
    """An ISO-8601 duration as (months, microseconds), signed."""
    m = _DURATION.match(str(text).strip())
    if m is None or str(text).strip().upper() in ("P", "PT", "-P", "+P"):
        raise InvalidArgument(f"{text!r} is not an ISO-8601 duration such as P1DT2H or PT30M")
    sign = -1 if m.group(1) == "-" else 1
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in m.groups()[1:7])
    seconds = float(m.group(8) or 0)
    micros = weeks * _US["W"] + days * _US["D"] + hours * _US["H"] + minutes * _US["MIN"]
    micros += round(seconds * 1_000_000)
    return sign * (years * 12 + months), sign * micros


def shift(values: np.ndarray, months: int, micros: int) -> np.ndarray:
    """Microsecond timestamps moved by a calendar ``months`` and a fixed ``micros`` (vectorised)."""
    out = np.asarray(values, dtype=np.int64)
    if months:
        t = out.astype("datetime64[us]")
        month = t.astype("datetime64[M]")
        into = t - month.astype("datetime64[us]")  # time since the month started
        day = into // np.timedelta64(1, "D")
        target = month + np.timedelta64(months, "M")
        length = (
            (target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")
        ).astype(np.int64)
        clamped = np.minimum(day.astype(np.int64), length - 1)
        rest = into - day * np.timedelta64(1, "D")
        moved = target.astype("datetime64[D]") + clamped.astype("timedelta64[D]")
        out = (moved.astype("datetime64[us]") + rest).astype(np.int64)
    return out + np.int64(micros)
