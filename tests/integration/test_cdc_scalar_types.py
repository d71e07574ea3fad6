"""CDC carries TIMESTAMPTZ data and scalar / JSON-path indexes to another site (two Kafka clusters):
site B's catalog holds the same indexes, and its filters and output zones answer as site A's do
and as the reference computed here says."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from zoneinfo import ZoneInfo

import pytest
from pymilvus import DataType, MilvusClient

from tests.integration.test_cdc import cdc, site_a, site_b, site_b_bootstrap  # noqa: F401 (fixtures)
from tests.integration.test_cdc_support import endpoint

pytestmark = pytest.mark.integration


def test_timestamptz_and_json_path_indexes_replicate(site_a, site_b, cdc) -> None:  # noqa: F811
    name, task = f"tsz_{uuid.uuid4().hex[:8]}", f"tsz-{uuid.uuid4().hex[:8]}"
    a, b = MilvusClient(site_a.uri), MilvusClient(site_b.uri)
    schema = a.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("tsz", DataType.TIMESTAMPTZ)
    schema.add_field("meta", DataType.JSON)
    a.create_collection(name, schema=schema, properties={"timezone": "Asia/Shanghai"})
    task_id = cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )["id"]
    base = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    times = [base + dt.timedelta(hours=5 * i) for i in range(80)]
    rows = [
        {
            "id": i,
            "vec": [float(i), 1.0],
            "tsz": t.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None).isoformat(),  # naive
            "meta": {"a": i % 10, "s": "even" if i % 2 == 0 else "odd"},
            "color": "red" if i % 3 == 0 else "blue",
        }
        for i, t in enumerate(times)
    ]
    a.insert(name, rows[:50])
    a.flush(name)
    a.insert(name, rows[50:])
    idx = a.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("tsz", index_type="STL_SORT")
    idx.add_index(
        "meta",
        index_type="INVERTED",
        index_name="meta_a",
        params={"json_path": 'meta["a"]', "json_cast_type": "DOUBLE"},
    )
    idx.add_index(
        "meta",
        index_type="INVERTED",
        index_name="meta_s",
        params={"json_path": 'meta["s"]', "json_cast_type": "VARCHAR"},
    )
    idx.add_index(
        "color",
        index_type="INVERTED",
        index_name="dyn_color",
        params={"json_path": "color", "json_cast_type": "VARCHAR"},
    )
    a.create_index(name, idx, sync=False)  # no indexer runs at these sites
    a.load_collection(name)
    a.flush(name)
    cdc.wait_caught_up(task, after=time.time())
    want_names = {"vec", "tsz", "meta_a", "meta_s", "dyn_color"}
    deadline = time.monotonic() + 30
    while not (b.has_collection(name) and set(b.list_indexes(name)) == want_names):
        assert time.monotonic() < deadline, "the collection and its indexes did not reach site B"
        time.sleep(0.1)
    for index in ("meta_a", "meta_s", "dyn_color"):
        da, db = a.describe_index(name, index), b.describe_index(name, index)
        assert {k: db[k] for k in ("field_name", "json_path", "json_cast_type", "index_type")} == {
            k: da[k] for k in ("field_name", "json_path", "json_cast_type", "index_type")
        }
    b.load_collection(name)
    pivot = base + dt.timedelta(days=7)
    cases = {
        'meta["a"] < 3 and meta["s"] == "even"': lambda i, t: i % 10 < 3 and i % 2 == 0,
        f"tsz >= ISO '{pivot.isoformat()}' and color == \"red\"": lambda i, t: t >= pivot and i % 3 == 0,
        "tsz - INTERVAL 'PT12H' < ISO '2025-06-02T00:00:00Z'": lambda i, t: (
            t - dt.timedelta(hours=12) < dt.datetime(2025, 6, 2, tzinfo=dt.UTC)
        ),
    }
    for expr, pred in cases.items():
        want = {i for i, t in enumerate(times) if pred(i, t)}
        for c in (a, b):
            got = c.query(
                name, expr, output_fields=["tsz"], consistency_level="Strong", timezone="Europe/Paris"
            )
            assert {r["id"]: r["tsz"] for r in got} == {
                i: times[i].astimezone(ZoneInfo("Europe/Paris")).isoformat() for i in want
            }, expr
    # B answers in the replicated collection zone when the request names none
    got = b.query(name, "id == 3", output_fields=["tsz"], consistency_level="Strong")[0]["tsz"]
    assert got == times[3].astimezone(ZoneInfo("Asia/Shanghai")).isoformat()
    cdc.client.delete(task)
    assert task_id
