"""Milvus 2.6's data-model extras through pymilvus against real walvus processes: partial updates
(with array operators), ordering in query and search, ``cost`` in results, vector fields added
after creation and INT8 vectors. Each is checked against a reference computed here."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, FieldOp, MilvusException

from tests.integration.search_support import running

pytestmark = pytest.mark.integration
DIM = 4


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("data-model")) as (dep, client):
        yield dep, client


def _strong(**kw):
    return {"consistency_level": "Strong", **kw}


def _partial_collection(client, name: str) -> None:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("name", DataType.VARCHAR, max_length=64)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    schema.add_field("note", DataType.VARCHAR, max_length=64, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


def _rows(client, name: str) -> dict[int, dict]:
    got = client.query(name, filter="id >= 0", output_fields=["*"], **_strong())
    return {r["id"]: r for r in got}


def _same(got: dict[int, dict], want: dict[int, dict]) -> None:
    assert sorted(got) == sorted(want)
    for k, row in want.items():
        for field, value in row.items():
            if field == "vec":
                np.testing.assert_array_equal(np.asarray(got[k][field], dtype=np.float32), value)
            else:
                assert got[k].get(field) == value, (k, field)


def test_partial_update_merges_given_fields(live):
    _, client = live
    name = "pu_merge"
    _partial_collection(client, name)
    rng = np.random.default_rng(7)
    vecs = rng.random((3, DIM), dtype=np.float32)
    want = {
        i: {
            "id": i,
            "vec": vecs[i],
            "name": f"n{i}",
            "price": 10.0 * i,
            "tags": [i],
            "note": None,
            "color": "red",
        }
        for i in range(3)
    }
    client.insert(name, [dict(r) for r in want.values()])
    _same(_rows(client, name), want)

    # pymilvus needs the same fields in every row of one partial upsert
    client.upsert(name, [{"id": 1, "price": 99.5}], partial_update=True)
    client.upsert(name, [{"id": 2, "name": "m2", "size": 3}], partial_update=True)
    want[1]["price"] = 99.5
    want[2]["name"] = "m2"
    want[2]["size"] = 3  # a new dynamic key joins the stored ones
    _same(_rows(client, name), want)

    # a nullable field set to null, another vector
    v = rng.random(DIM, dtype=np.float32)
    client.upsert(name, [{"id": 1, "note": "x"}], partial_update=True)
    client.upsert(name, [{"id": 1, "note": None, "vec": v}], partial_update=True)
    want[1]["vec"] = v
    _same(_rows(client, name), want)

    # array operators
    client.upsert(
        name, [{"id": 0, "tags": [5, 6]}, {"id": 2, "tags": [7]}], field_ops={"tags": FieldOp.array_append()}
    )
    want[0]["tags"] = [0, 5, 6]
    want[2]["tags"] = [2, 7]
    client.upsert(
        name, [{"id": 0, "tags": [0, 6]}, {"id": 1, "tags": [999]}], field_ops={"tags": "array_remove"}
    )
    want[0]["tags"] = [5]
    _same(_rows(client, name), want)

    # a missing key with every required field is inserted; nullable "note" is null
    v3 = rng.random(DIM, dtype=np.float32)
    client.upsert(name, [{"id": 3, "vec": v3, "name": "n3", "price": 3.0, "tags": []}], partial_update=True)
    want[3] = {"id": 3, "vec": v3, "name": "n3", "price": 3.0, "tags": [], "note": None}
    _same(_rows(client, name), want)

    # a missing key without the required fields: refused, nothing written (not even the other row)
    with pytest.raises(MilvusException, match="no row"):
        client.upsert(name, [{"id": 1, "price": 1.0}, {"id": 4, "price": 4.0}], partial_update=True)
    _same(_rows(client, name), want)
    # an array operator on a non-array field: refused
    with pytest.raises(MilvusException, match="ARRAY"):
        client.upsert(name, [{"id": 1, "name": "z"}], field_ops={"name": "array_append"})
    _same(_rows(client, name), want)
    # searches see the merged row: its vector and fields
    hits = client.search(name, data=[v.tolist()], limit=1, output_fields=["price", "note"], **_strong())
    assert hits[0][0]["id"] == 1 and hits[0][0]["entity"]["note"] is None
