"""Scalar and JSON-path indexes through pymilvus against real walvus processes.

INVERTED, BITMAP, STL_SORT and AUTOINDEX on scalar fields, several JSON-path indexes on one JSON
field and one on a dynamic key: DescribeIndex / list_indexes / drop_index answer as Milvus does,
filtered query and search return exactly the rows a reference computed here says (growing and
sealed), the sealed segments prune through postings, and all of it survives a restart.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.integration.search_support import running, stats, wait_indexed

pytestmark = pytest.mark.integration
DIM = 4
N = 600


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("scalar-indexes")) as (dep, client):
        yield dep, client


def _rows(start: int, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        a = rng.choice([rng.randint(-20, 20), rng.uniform(-20, 20), str(rng.randint(0, 3))])
        meta = {"a": a, "s": rng.choice(["red", "blue", "green"]), "b": rng.random() < 0.4}
        if rng.random() < 0.15:
            meta.pop("a")
        out.append(
            {
                "id": i,
                "vec": [rng.uniform(-1, 1) for _ in range(DIM)],
                "age": None if rng.random() < 0.1 else rng.randint(0, 99),
                "tag": rng.choice(["x", "y", "z", "w"]),
                "price": rng.uniform(0, 100),
                "meta": meta,
                "color": rng.choice(["red", "blue", 7]),
            }
        )
    return out


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# filter -> reference predicate over one row (as inserted)
CASES = {
    'meta["a"] > 5': lambda r: _num(r["meta"].get("a")) and r["meta"]["a"] > 5,
    'meta["a"] >= -2 and meta["a"] < 3 and tag == "x"': lambda r: (
        _num(r["meta"].get("a")) and -2 <= r["meta"]["a"] < 3 and r["tag"] == "x"
    ),
    'meta["a"] in [1, 2, 3] or age == 10': lambda r: (
        (_num(r["meta"].get("a")) and r["meta"]["a"] in (1, 2, 3)) or r["age"] == 10
    ),
    'meta["s"] == "red" and meta["b"]': lambda r: r["meta"]["s"] == "red" and r["meta"]["b"],
    'color == "blue" and age > 50': lambda r: r["color"] == "blue" and r["age"] is not None and r["age"] > 50,
    'tag in ["y", "w"] and price <= 20': lambda r: r["tag"] in ("y", "w") and r["price"] <= 20,
    "age >= 90": lambda r: r["age"] is not None and r["age"] >= 90,
    'meta["a"] != 4': lambda r: not (_num(r["meta"].get("a")) and r["meta"]["a"] == 4),
}


def _create(client: MilvusClient, name: str) -> None:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("age", DataType.INT64, nullable=True)
    schema.add_field("tag", DataType.VARCHAR, max_length=8)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("meta", DataType.JSON)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("age", index_type="STL_SORT")
    idx.add_index("tag", index_type="BITMAP")
    idx.add_index("price", index_type="AUTOINDEX")
    idx.add_index(
        "meta",
        index_type="INVERTED",
        index_name="meta_a",
        params={"json_path": 'meta["a"]', "json_cast_type": "DOUBLE"},
    )
    idx.add_index(
        "meta",
        index_type="AUTOINDEX",
        index_name="meta_s",
        params={"json_path": "meta['s']", "json_cast_type": "VARCHAR"},
    )
    idx.add_index(
        "meta",
        index_type="INVERTED",
        index_name="meta_b",
        params={"json_path": 'meta["b"]', "json_cast_type": "BOOL"},
    )
    idx.add_index(
        "color",
        index_type="INVERTED",
        index_name="dyn_color",
        params={"json_path": "color", "json_cast_type": "VARCHAR"},
    )
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


def _check_filters(client: MilvusClient, name: str, rows: list[dict]) -> None:
    by_id = {r["id"]: r for r in rows}
    vecs = np.array([r["vec"] for r in rows], np.float64)
    ids = np.array([r["id"] for r in rows])
    q = np.array([[0.3, -0.2, 0.5, 0.1]])
    for expr, pred in CASES.items():
        want = {i for i, r in by_id.items() if pred(r)}
        got = client.query(name, filter=expr, output_fields=["id"], limit=16384)
        assert {r["id"] for r in got} == want, expr
        allowed = np.array([pred(r) for r in rows])
        d = ((vecs - q) ** 2).sum(axis=1)
        order = np.argsort(np.where(allowed, d, np.inf), kind="stable")[: min(10, int(allowed.sum()))]
        hits = client.search(name, q.tolist(), filter=expr, limit=10, anns_field="vec")[0]
        assert [h["id"] for h in hits] == ids[order].tolist(), expr


def _describe(client: MilvusClient, name: str, index: str) -> dict:
    return client.describe_index(name, index)


def test_scalar_and_json_path_indexes_describe_and_filter(live) -> None:
    dep, client = live
    name = "scalar_idx"
    _create(client, name)
    names = set(client.list_indexes(name))
    assert names == {"vec", "age", "tag", "price", "meta_a", "meta_s", "meta_b", "dyn_color"}
    assert set(client.list_indexes(name, field_name="meta")) == {"meta_a", "meta_s", "meta_b"}
    d = _describe(client, name, "meta_a")
    assert (d["field_name"], d["index_type"], d["json_path"], d["json_cast_type"]) == (
        "meta",
        "INVERTED",
        'meta["a"]',
        "DOUBLE",
    )
    d = _describe(client, name, "dyn_color")
    assert (d["field_name"], d["json_path"], d["json_cast_type"]) == ("color", "color", "VARCHAR")
    assert _describe(client, name, "tag")["index_type"] == "BITMAP"
    # bad requests are refused and change nothing
    bad = [
        ("meta", "INVERTED", "meta_x", {"json_path": 'meta["x"]', "json_cast_type": "INT9"}),
        ("meta", "INVERTED", "meta_y", {"json_path": 'meta["x"]'}),
        ("meta", "INVERTED", "meta_a", {"json_path": 'meta["other"]', "json_cast_type": "DOUBLE"}),
        ("meta", "INVERTED", "meta_z", {"json_path": 'meta["a"]', "json_cast_type": "DOUBLE"}),
        ("price", "BITMAP", "price_bm", {}),
        ("meta", "TRIE", "meta_t", {"json_path": 'meta["a"]', "json_cast_type": "VARCHAR"}),
    ]
    for field, itype, iname, params in bad:
        p = client.prepare_index_params()
        p.add_index(field, index_type=itype, index_name=iname, params=params)
        with pytest.raises(MilvusException):
            client.create_index(name, p)
    assert set(client.list_indexes(name)) == names

    rows = _rows(0, N, 1)
    client.insert(name, rows[: N // 2])
    client.flush(name)
    client.insert(name, rows[N // 2 :])  # growing: evaluated without postings
    _check_filters(client, name, rows)
    client.flush(name)
    wait_indexed(client, name, 1)
    before = stats(client, name)["scalar_postings"]
    _check_filters(client, name, rows)
    assert stats(client, name)["scalar_postings"] > before  # sealed segments pruned through postings

    with pytest.raises(MilvusException, match="release"):
        client.drop_index(name, "meta_a")
    client.release_collection(name)
    client.drop_index(name, "meta_a")
    assert set(client.list_indexes(name)) == names - {"meta_a"}
    assert not client.describe_index(name, "meta_a")  # pymilvus answers None for a missing index
    client.load_collection(name)
    _check_filters(client, name, rows)

    # a restart keeps every index and the same answers
    for proc in ("gateway", "streams"):  # the catalog, WAL and Delta are all a restart has
        dep.stop(proc)
    dep.start("streams", "gateway")
    client2 = MilvusClient(dep.uri)
    try:
        deadline = time.monotonic() + 60
        while str(client2.get_load_state(name)["state"]) != "Loaded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert set(client2.list_indexes(name)) == names - {"meta_a"}
        assert _describe(client2, name, "dyn_color")["json_cast_type"] == "VARCHAR"
        wait_indexed(client2, name, 1)
        _check_filters(client2, name, rows)
    finally:
        client2.close()
