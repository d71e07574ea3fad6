"""Query GROUP BY with count/sum/avg/min/max and TIMESTAMPTZ ``time_fields``, through the real pymilvus
client, against references computed here in plain Python."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from searcher.aggregation import aggregate
from tests.memory import RunningGateway, running_gateway
from walvus.searcher import Aggregate

_names = itertools.count()
NAMES = ["Green", "Rachel", "Joe", "Chandler", "Phebe", "Ross", "Monica"]
TS = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in range(3)]
N = 300


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    rng = random.Random(19530)
    return [
        {
            "pk": str(i),
            "c1": rng.choice(NAMES),
            "c2": None if rng.random() < 0.15 else rng.randint(0, 20),
            "c3": rng.randint(0, 6),
            "c4": None if rng.random() < 0.15 else rng.uniform(0.0, 100.0),
            "ts": TS[i % 3].isoformat(),
            "c5": [rng.random() for _ in range(4)],
            "c6": rng.choice(NAMES),
            "c7": None if rng.random() < 0.2 else rng.choice(["x", "y"]),
        }
        for i in range(N)
    ]


@pytest.fixture(scope="module")
def coll(client: MilvusClient, rows: list[dict[str, Any]]) -> str:
    s = MilvusClient.create_schema()
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=100)
    s.add_field("c1", DataType.VARCHAR, max_length=512)
    s.add_field("c2", DataType.INT16, nullable=True)
    s.add_field("c3", DataType.INT32)
    s.add_field("c4", DataType.DOUBLE, nullable=True)
    s.add_field("ts", DataType.TIMESTAMPTZ)
    s.add_field("c5", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("c6", DataType.VARCHAR, max_length=512)
    s.add_field("c7", DataType.VARCHAR, max_length=8, nullable=True)
    s.add_field("doc", DataType.JSON, nullable=True)
    ip = client.prepare_index_params()
    ip.add_index("c5", index_type="FLAT", metric_type="L2")
    name = f"agg_{next(_names)}"
    client.create_collection(name, schema=s, index_params=ip, consistency_level="Strong")
    client.insert(name, rows)
    return name


def reference(
    rows: list[dict[str, Any]], keys: list[str], aggs: dict[str, Callable[[list[dict[str, Any]]], Any]]
) -> dict[tuple, dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return {k: {name: fn(members) for name, fn in aggs.items()} for k, members in groups.items()}


def values(members: list[dict[str, Any]], f: str) -> list[Any]:
    return [m[f] for m in members if m[f] is not None]


def count(f: str) -> Callable:
    return lambda m: len(values(m, f))


def total(f: str) -> Callable:
    return lambda m: sum(values(m, f)) if values(m, f) else None


def mean(f: str) -> Callable:
    return lambda m: sum(values(m, f)) / len(values(m, f)) if values(m, f) else None


def low(f: str) -> Callable:
    return lambda m: min(values(m, f), default=None)


def high(f: str) -> Callable:
    return lambda m: max(values(m, f), default=None)


def check(got: list[dict[str, Any]], want: dict[tuple, dict[str, Any]], keys: list[str]) -> None:
    assert len(got) == len(want)
    for row in got:
        expected = want[tuple(row[k] for k in keys)]
        for name, value in expected.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value), name
            else:
                assert row[name] == value, name


def test_group_by_timestamptz_with_count_and_max(client: MilvusClient, coll: str, rows: list) -> None:
    got = client.query(
        coll, filter="c2 < 10", output_fields=["ts", "count(c2)", "max(ts)"], group_by_fields=["ts"]
    )
    kept = [r for r in rows if r["c2"] is not None and r["c2"] < 10]
    want = reference(kept, ["ts"], {"count(c2)": count("c2"), "max(ts)": high("ts")})
    # TIMESTAMPTZ keys and max() come back as ISO text in UTC (the collection has no zone)
    check([{**r, "ts": r["ts"].replace("Z", "+00:00")} for r in got], want, ["ts"])
    assert [r["ts"] for r in got] == sorted(r["ts"] for r in got)
    in_tokyo = client.query(
        coll, filter="", output_fields=["ts", "count(*)"], group_by_fields=["ts"], timezone="Asia/Tokyo"
    )
    assert [r["ts"] for r in in_tokyo] == [t.astimezone(ZoneInfo("Asia/Tokyo")).isoformat() for t in TS]
    assert [r["count(*)"] for r in in_tokyo] == [100, 100, 100]


def test_group_by_two_fields_with_min_max(client: MilvusClient, coll: str, rows: list) -> None:
    got = client.query(
        coll, filter="c2 < 10", output_fields=["c1", "c6", "min(c2)", "max(c2)"], group_by_fields=["c1", "c6"]
    )
    kept = [r for r in rows if r["c2"] is not None and r["c2"] < 10]
    check(got, reference(kept, ["c1", "c6"], {"min(c2)": low("c2"), "max(c2)": high("c2")}), ["c1", "c6"])
    assert [(r["c1"], r["c6"]) for r in got] == sorted((r["c1"], r["c6"]) for r in got)


def test_averages_are_doubles_and_sums_keep_integers(client: MilvusClient, coll: str, rows: list) -> None:
    fields = ["c1", "avg(c2)", "avg(c3)", "avg(c4)", "sum(c2)", "sum(c3)", "sum(c4)", "count(*)", "count(c4)"]
    got = client.query(coll, filter="", output_fields=fields, limit=10, group_by_fields=["c1"])
    want = reference(
        rows,
        ["c1"],
        {
            "avg(c2)": mean("c2"),
            "avg(c3)": mean("c3"),
            "avg(c4)": mean("c4"),
            "sum(c2)": total("c2"),
            "sum(c3)": total("c3"),
            "sum(c4)": total("c4"),
            "count(*)": len,
            "count(c4)": count("c4"),
        },
    )
    check(got, want, ["c1"])
    for row in got:
        assert all(isinstance(row[f], float) for f in ("avg(c2)", "avg(c3)", "avg(c4)", "sum(c4)"))
        assert all(type(row[f]) is int for f in ("sum(c2)", "sum(c3)", "count(*)", "count(c4)"))


def test_limit_and_offset_page_the_sorted_groups(client: MilvusClient, coll: str) -> None:
    every = client.query(coll, filter="", output_fields=["c1", "count(*)"], group_by_fields=["c1"])
    assert [r["c1"] for r in every] == sorted(NAMES)
    page = client.query(
        coll, filter="", output_fields=["c1", "count(*)"], group_by_fields=["c1"], limit=3, offset=2
    )
    assert page == every[2:5]


def test_names_keep_the_clients_spelling(client: MilvusClient, coll: str, rows: list) -> None:
    got = client.query(
        coll,
        filter="c3 == 1",
        output_fields=["c1", "COUNT(c3)", "Sum(c3)", "mAx( c3 )"],
        group_by_fields=["c1"],
    )
    kept = [r for r in rows if r["c3"] == 1]
    want = reference(
        kept, ["c1"], {"COUNT(c3)": count("c3"), "Sum(c3)": total("c3"), "mAx( c3 )": high("c3")}
    )
    check(got, want, ["c1"])


def test_null_keys_form_one_group(client: MilvusClient, coll: str, rows: list) -> None:
    got = client.query(coll, filter="", output_fields=["c7", "count(*)", "sum(c3)"], group_by_fields=["c7"])
    check(got, reference(rows, ["c7"], {"count(*)": len, "sum(c3)": total("c3")}), ["c7"])
    assert [r["c7"] for r in got] == ["x", "y", None]


def test_aggregation_without_grouping_is_one_row(client: MilvusClient, coll: str, rows: list) -> None:
    got = client.query(coll, filter="", output_fields=["count(*)", "count(c2)", "sum(c2)", "avg(c3)"])
    c2 = values(rows, "c2")
    assert len(got) == 1
    assert got[0]["count(*)"] == N and got[0]["count(c2)"] == len(c2) and got[0]["sum(c2)"] == sum(c2)
    assert got[0]["avg(c3)"] == pytest.approx(sum(r["c3"] for r in rows) / N)
    none = client.query(coll, filter="c3 > 100", output_fields=["count(c2)", "sum(c2)", "max(c1)"])
    assert none == [{"count(c2)": 0, "sum(c2)": None, "max(c1)": None}]
    empty = client.query(coll, filter="c3 > 100", output_fields=["c1", "count(c2)"], group_by_fields=["c1"])
    assert empty == []


@pytest.mark.parametrize(
    "output,group_by,message",
    [
        (["c4", "count(c1)"], ["c4"], "group by field c4 has unsupported data type Double"),
        (["doc", "count(c1)"], ["doc"], "group by field doc has unsupported data type JSON"),
        (["c5", "count(c1)"], ["c5"], "group by field c5 has unsupported data type FloatVector"),
        (["c1", "sum(c6)"], ["c1"], "aggregation operator sum does not support data type VarChar"),
        (["c1", "avg(ts)"], ["c1"], "aggregation operator avg does not support data type Timestamptz"),
        (["c1", "count(doc)"], ["c1"], "aggregation operator count does not support data type JSON"),
        (["c1", "median(c2)"], ["c1"], "unsupported aggregation function 'median'"),
        (["c1", "count(c2"], ["c1"], "an aggregation is written function"),
        (["c1", "count()"], ["c1"], "names no field"),
        (["c1", "sum(*)"], ["c1"], "only count"),
        (["c1", "count(nope)"], ["c1"], "field nope not exist"),
        (["c1", "c3", "count(c2)"], ["c1"], "output field 'c3' is not allowed"),
        (["c3", "count(c2)"], [], "output field 'c3' is not allowed"),
        (["c1", "count(*)"], ["nope"], "field nope not exist"),
    ],
)
def test_unsupported_shapes_are_refused(
    client: MilvusClient, coll: str, output: list[str], group_by: list[str], message: str
) -> None:
    with pytest.raises(MilvusException, match=message.replace("(", r"\(")):
        client.query(coll, filter="", output_fields=output, group_by_fields=group_by, limit=10)


def test_grouping_refuses_order_by_and_iterators(client: MilvusClient, coll: str) -> None:
    with pytest.raises(MilvusException, match="order_by cannot be combined"):
        client.query(
            coll,
            filter="",
            output_fields=["c1", "count(*)"],
            group_by_fields=["c1"],
            limit=5,
            order_by=["c1:asc"],
        )


def test_time_fields_return_components_in_the_output_zone(
    client: MilvusClient, coll: str, rows: list
) -> None:
    parts = "year, month, day, hour, minute, second, microsecond"
    got = client.query(
        coll, filter='pk in ["0", "1"]', output_fields=["ts"], timezone="America/Havana", time_fields=parts
    )
    for row in got:
        t = dt.datetime.fromisoformat(rows[int(row["pk"])]["ts"]).astimezone(ZoneInfo("America/Havana"))
        assert row["ts"] == [t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond]
    hits = client.search(
        coll, [[0.5] * 4], limit=3, output_fields=["ts"], timezone="Asia/Tokyo", time_fields="hour day"
    )[0]
    for hit in hits:
        t = dt.datetime.fromisoformat(rows[int(hit["pk"])]["ts"]).astimezone(ZoneInfo("Asia/Tokyo"))
        assert hit["entity"]["ts"] == [t.hour, t.day]
    with pytest.raises(MilvusException, match="invalid time_fields"):
        client.query(coll, filter="", output_fields=["ts"], limit=1, time_fields="year, week")


def test_aggregate_matches_python_on_a_table() -> None:
    table = pa.table(
        {
            "k": pa.array(["b", "a", None, "a", "b"]),
            "v": pa.array([1, None, 3, 4, 5], pa.int8()),
            "f": pa.array([0.5, 1.5, None, 2.5, None], pa.float32()),
        }
    )
    aggs = [
        Aggregate("count", None, "n"),
        Aggregate("count", "v", "nv"),
        Aggregate("sum", "v", "sv"),
        Aggregate("avg", "f", "af"),
        Aggregate("max", "k", "mk"),
        Aggregate("sum", "v", "SUM(v)"),
    ]
    out = aggregate(table, ["k"], aggs)
    assert out.column_names == ["k", "n", "nv", "sv", "af", "mk", "SUM(v)"]
    assert out.to_pylist() == [
        {"k": "a", "n": 2, "nv": 1, "sv": 4, "af": 2.0, "mk": "a", "SUM(v)": 4},
        {"k": "b", "n": 2, "nv": 2, "sv": 6, "af": 0.5, "mk": "b", "SUM(v)": 6},
        {"k": None, "n": 1, "nv": 1, "sv": 3, "af": None, "mk": None, "SUM(v)": 3},
    ]
    assert out.schema.field("sv").type == pa.int64() and out.schema.field("af").type == pa.float64()
