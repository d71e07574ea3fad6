"""Query GROUP BY with aggregations against real walvus processes: what pymilvus's
examples/query_group_by.py means to do (its ``prepare_data = False`` skips the inserts and the
index, so as written it stops at load_collection, on Milvus as on walvus). Rows in sealed and
growing segments, some deleted, grouped by VARCHAR pairs and by TIMESTAMPTZ, checked against
references computed here; then ``time_fields`` on the same collection."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.integration.search_support import running
from tests.procs import LAYOUTS

pytestmark = pytest.mark.integration
NAMES = ["Green", "Rachel", "Joe", "Chandler", "Phebe", "Ross", "Monica"]
TS = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in range(3)]


@pytest.fixture(scope="module", params=LAYOUTS)
def live(request, kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("aggregation"), request.param) as (dep, client):
        yield dep, client


def _rows(batch: int, n: int, rng: random.Random, vectors: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "pk": f"{batch}-{i}",
            "c1": rng.choice(NAMES),
            "c2": rng.randint(0, 4),
            "c3": rng.randint(0, 6),
            "c4": rng.uniform(0.0, 100.0),
            "ts": TS[(batch + i) % 3].isoformat(),
            "c5": vectors[i].tolist(),
            "c6": rng.choice(NAMES),
        }
        for i in range(n)
    ]


def _groups(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def test_the_query_group_by_example_with_its_data(live) -> None:
    _dep, client = live
    name = "test_query_group_by"
    s = MilvusClient.create_schema()
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=100)
    s.add_field("c1", DataType.VARCHAR, max_length=512)
    s.add_field("c2", DataType.INT16)
    s.add_field("c3", DataType.INT32)
    s.add_field("c4", DataType.DOUBLE)
    s.add_field("ts", DataType.TIMESTAMPTZ)
    s.add_field("c5", DataType.FLOAT_VECTOR, dim=8)
    s.add_field("c6", DataType.VARCHAR, max_length=512)
    client.create_collection(name, schema=s, consistency_level="Strong")
    rng = random.Random(19530)
    vectors = np.random.default_rng(19530).random((122, 8))
    rows: list[dict[str, Any]] = []
    for batch in range(3):
        chunk = _rows(batch, 122, rng, vectors)
        client.insert(name, chunk)
        rows += chunk
        if batch < 2:  # the last batch stays in growing segments
            client.flush(name)
    ip = client.prepare_index_params()
    ip.add_index("c5", index_type="IVF_FLAT", metric_type="L2", nlist=128)
    client.create_index(name, ip)
    client.load_collection(name)
    gone = [r["pk"] for r in rows[::10]]
    client.delete(name, ids=gone)
    rows = [r for r in rows if r["pk"] not in set(gone)]

    # 1. group by TIMESTAMPTZ + count + max, in UTC and in another zone
    got = client.query(
        name, filter="c2 < 10", output_fields=["ts", "count(c2)", "max(ts)"], group_by_fields=["ts"]
    )
    want = _groups(rows, ["ts"])
    assert [(r["ts"], r["count(c2)"], r["max(ts)"]) for r in got] == [
        (t.isoformat(), len(want[(t.isoformat(),)]), t.isoformat()) for t in TS
    ]
    zoned = client.query(
        name, filter="", output_fields=["ts", "count(*)"], group_by_fields=["ts"], timezone="Asia/Shanghai"
    )
    assert [r["ts"] for r in zoned] == [t.astimezone(ZoneInfo("Asia/Shanghai")).isoformat() for t in TS]

    # 2. group by (c1, c6) + min/max
    got = client.query(
        name, filter="c2 < 3", output_fields=["c1", "c6", "min(c2)", "max(c2)"], group_by_fields=["c1", "c6"]
    )
    want = _groups([r for r in rows if r["c2"] < 3], ["c1", "c6"])
    assert len(got) == len(want)
    for r in got:
        members = want[(r["c1"], r["c6"])]
        assert (r["min(c2)"], r["max(c2)"]) == (min(m["c2"] for m in members), max(m["c2"] for m in members))

    # 3./4. group by c1 + avg(c2, c3, c4) (+ sum, count), with and without a filter, limited
    for flt, limit in (("c2 < 10", None), ("", 10)):
        fields = ["c1", "avg(c2)", "avg(c3)", "avg(c4)", "sum(c3)", "count(*)"]
        kwargs = {} if limit is None else {"limit": limit}
        got = client.query(name, filter=flt, output_fields=fields, group_by_fields=["c1"], **kwargs)
        want = _groups(rows, ["c1"])
        assert [r["c1"] for r in got] == sorted(k[0] for k in want)[:limit]
        for r in got:
            members = want[(r["c1"],)]
            for f in ("c2", "c3", "c4"):
                assert r[f"avg({f})"] == pytest.approx(sum(m[f] for m in members) / len(members))
            assert r["sum(c3)"] == sum(m["c3"] for m in members) and r["count(*)"] == len(members)

    # aggregations over every matching row, no grouping
    [one] = client.query(name, filter="c3 >= 3", output_fields=["count(*)", "sum(c2)", "min(c1)"])
    kept = [r for r in rows if r["c3"] >= 3]
    assert one == {
        "count(*)": len(kept),
        "sum(c2)": sum(r["c2"] for r in kept),
        "min(c1)": min(r["c1"] for r in kept),
    }

    none = client.query(name, filter="c3 > 100", output_fields=["count(c2)", "sum(c2)", "max(ts)"])
    assert none == [{"count(c2)": 0, "sum(c2)": None, "max(ts)": None}]
    assert (
        client.query(name, filter="c3 > 100", output_fields=["c1", "count(*)"], group_by_fields=["c1"]) == []
    )

    # time_fields: the TIMESTAMPTZ output as its components in the request's zone
    got = client.query(
        name,
        filter='pk in ["0-1", "1-1"]',
        output_fields=["ts"],
        timezone="America/Havana",
        time_fields="year, month, day, hour, minute, second, microsecond",
    )
    by_pk = {r["pk"]: r for r in rows}
    for r in got:
        t = dt.datetime.fromisoformat(by_pk[r["pk"]]["ts"]).astimezone(ZoneInfo("America/Havana"))
        assert r["ts"] == [t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond]
