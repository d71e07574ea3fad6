"""TIMESTAMPTZ fields through pymilvus against real walvus processes, checked against Python's
datetime: ISO-8601 input with and without offsets (naive = the collection's time zone), filters
with ISO constants and INTERVAL arithmetic, output in the request's / collection's / database's
time zone, group-by, an STL_SORT index on the field, bad input refused, and a restart."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.integration.search_support import running, wait_indexed

pytestmark = pytest.mark.integration
UTC = dt.UTC
BASE = dt.datetime(2025, 1, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("timestamptz")) as (dep, client):
        yield dep, client


def _instants(n: int) -> list[dt.datetime | None]:
    out: list[dt.datetime | None] = []
    for i in range(n):
        out.append(None if i % 11 == 5 else BASE + dt.timedelta(hours=7 * i, microseconds=250 * (i % 3)))
    return out


def _text(i: int, t: dt.datetime | None) -> str | None:
    """Mixed spellings of the same instants: offsets, Z, and naive (read in Asia/Shanghai)."""
    if t is None:
        return None
    if i % 3 == 0:
        return t.astimezone(ZoneInfo("America/New_York")).isoformat()
    if i % 3 == 1:
        return t.isoformat().replace("+00:00", "Z")
    return t.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None).isoformat()


def _iso(t: dt.datetime, zone: str) -> str:
    return t.astimezone(ZoneInfo(zone)).isoformat()


def _add_months(t: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(t.month - 1 + months, 12)
    y, m = t.year + y, m + 1
    last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
    return t.replace(year=y, month=m, day=min(t.day, last))


def test_timestamptz_round_trip_filters_zones_and_restart(live) -> None:
    dep, client = live
    name = "tsz"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("tsz", DataType.TIMESTAMPTZ, nullable=True)
    schema.add_field("day", DataType.TIMESTAMPTZ)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("tsz", index_type="STL_SORT", index_name="tsz_sort")
    client.create_collection(
        name,
        schema=schema,
        index_params=idx,
        consistency_level="Strong",
        properties={"timezone": "Asia/Shanghai"},
    )
    n = 120
    times = _instants(n)
    days = [dt.datetime(2025, 3, 1 + i % 4, tzinfo=UTC) for i in range(n)]
    rows = [
        {"id": i, "vec": [float(i), 0.0], "tsz": _text(i, t), "day": d.isoformat()}
        for i, (t, d) in enumerate(zip(times, days, strict=True))
    ]
    client.insert(name, rows[:60])
    client.flush(name)
    client.insert(name, rows[60:])

    with pytest.raises(MilvusException, match="ISO-8601"):
        client.insert(
            name, [{"id": 999, "vec": [0.0, 0.0], "tsz": "should cause an error", "day": days[0].isoformat()}]
        )
    for bad in ({"timezone": "Mars/Olympus"},):
        with pytest.raises(MilvusException, match="timezone"):
            client.alter_collection_properties(name, bad)

    def check(c: MilvusClient) -> None:
        got = {
            r["id"]: r["tsz"]
            for r in c.query(name, "id >= 0", output_fields=["tsz"], timezone="America/Chicago")
        }
        assert got == {i: None if t is None else _iso(t, "America/Chicago") for i, t in enumerate(times)}
        # no request zone: the collection's
        got = {r["id"]: r["tsz"] for r in c.query(name, "id < 5", output_fields=["tsz"])}
        assert got == {i: None if times[i] is None else _iso(times[i], "Asia/Shanghai") for i in range(5)}
        pivot = BASE + dt.timedelta(days=10)
        cases = {
            f"tsz > ISO '{pivot.isoformat()}'": lambda t: t > pivot,
            f"tsz + INTERVAL 'P1DT2H' <= ISO '{pivot.isoformat()}'": lambda t: (
                t + dt.timedelta(days=1, hours=2) <= pivot
            ),
            "tsz - INTERVAL 'P1M' < ISO '2025-01-15T00:00:00+08:00'": lambda t: (
                _add_months(t, -1) < dt.datetime(2025, 1, 15, tzinfo=ZoneInfo("Asia/Shanghai"))
            ),
            f"tsz + INTERVAL 'P0D' != ISO '{times[3].isoformat()}'": lambda t: t != times[3],
            f"tsz == ISO '{times[7].astimezone(ZoneInfo('Asia/Tokyo')).isoformat()}'": lambda t: (
                t == times[7]
            ),
        }
        for expr, pred in cases.items():
            want = {i for i, t in enumerate(times) if t is not None and pred(t)}
            assert {r["id"] for r in c.query(name, expr, output_fields=["id"])} == want, expr
            hits = c.search(
                name,
                [[0.0, 0.0]],
                filter=expr,
                limit=5,
                anns_field="vec",
                output_fields=["tsz"],
                timezone="UTC",
            )[0]
            assert [h["id"] for h in hits] == sorted(want)[:5], expr
            assert all(h["entity"]["tsz"] == _iso(times[h["id"]], "UTC") for h in hits)
        groups = c.query(
            name, "id >= 0", output_fields=["day", "count(*)"], group_by_fields=["day"], timezone="UTC"
        )
        want = {d.isoformat(): days.count(d) for d in set(days)}
        assert {g["day"]: g["count(*)"] for g in groups} == want
        hits = c.search(
            name,
            [[0.0, 0.0]],
            limit=3,
            anns_field="vec",
            group_by_field="day",
            output_fields=["day"],
            timezone="UTC",
        )[0]
        assert [(h["id"], h["entity"]["day"]) for h in hits] == [(i, days[i].isoformat()) for i in range(3)]
        with pytest.raises(MilvusException):
            c.query(name, "tsz > 5", output_fields=["id"])

    check(client)
    client.flush(name)
    wait_indexed(client, name, 1)
    check(client)
    # the database's zone applies where the collection has none
    client.alter_collection_properties(name, {"timezone": "UTC"})
    got = client.query(name, "id == 1", output_fields=["tsz"])[0]["tsz"]
    assert got == _iso(times[1], "UTC")

    for proc in ("gateway", "streams"):  # the catalog, WAL and Delta are all a restart has
        dep.stop(proc)
    dep.start("streams", "gateway")
    client2 = MilvusClient(dep.uri)
    try:
        deadline = time.monotonic() + 60
        while str(client2.get_load_state(name)["state"]) != "Loaded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        wait_indexed(client2, name, 1)
        client2.alter_collection_properties(name, {"timezone": "Asia/Shanghai"})
        check(client2)
    finally:
        client2.close()
    assert np.all(np.diff([t.timestamp() for t in times if t is not None]) > 0)
