"""Milvus 2.6's data-model extras through pymilvus against real walvus processes: partial updates
(with array operators), ordering in query and search, ``cost`` in results, vector fields added
after creation and INT8 vectors. Each is checked against a reference computed here."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def test_concurrent_partial_updates_lose_nothing(live):
    """Two clients append to the same rows' array at once through one gateway: each append is a
    read-merge-write, serialised per collection, so every row ends with every appended element."""
    import threading

    from pymilvus import MilvusClient

    dep, client = live
    name = "pu_concurrent"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    keys = list(range(8))
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM, "tags": []} for i in keys])
    rounds = 15

    def writer(base: int) -> None:
        c = MilvusClient(dep.uri)
        try:
            for r in range(rounds):
                c.upsert(
                    name, [{"id": i, "tags": [base + r]} for i in keys], field_ops={"tags": "array_append"}
                )
        finally:
            c.close()

    threads = [threading.Thread(target=writer, args=(b,)) for b in (1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = {
        r["id"]: sorted(r["tags"])
        for r in client.query(name, filter="id >= 0", output_fields=["tags"], **_strong())
    }
    want = sorted([1000 + r for r in range(rounds)] + [2000 + r for r in range(rounds)])
    assert got == {i: want for i in keys}


# ---------------------------------------------------------------------------------- ordering


def _order_ref(rows: list[dict], keys: list[tuple[str, bool]]) -> list[int]:
    """Row ids ordered by ``keys`` (value getter name, descending): nulls last, ties keep order."""
    out = list(rows)
    for name, desc in reversed(keys):
        present = [r for r in out if r[name] is not None]
        absent = [r for r in out if r[name] is None]
        out = sorted(present, key=lambda r: r[name], reverse=desc) + absent
        # sorted is stable, and reverse=True keeps ties in order too
    return [r["id"] for r in out]


def test_order_by_in_query_and_search(live):
    _, client = live
    name = "ordering"
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("rating", DataType.INT64, nullable=True)
    schema.add_field("name", DataType.VARCHAR, max_length=16)
    schema.add_field("meta", DataType.JSON)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(11)
    n = 120
    vecs = rng.random((n, DIM), dtype=np.float32)
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": i,
                "vec": vecs[i],
                "price": float(i % 13),  # many ties
                "rating": None if i % 7 == 0 else int(i % 5),
                "name": f"n{(i * 37) % 101:03d}",
                "meta": {"age": i % 11} if i % 4 else {"other": 1},
                "views": int((i * 53) % 97),
            }
        )
    client.insert(name, [dict(r) for r in rows[:60]])
    client.flush(name)  # half sealed, half growing
    client.insert(name, [dict(r) for r in rows[60:]])
    ref = [
        {**r, "age": r["meta"].get("age")} for r in sorted(rows, key=lambda r: r["id"])
    ]  # ties: primary key ascending

    def q(order, **kw):
        res = client.query(name, output_fields=["id"], order_by=order, **_strong(**kw))
        return [r["id"] for r in res]

    assert (
        q(["price:desc"], filter="id > 5", limit=7, offset=3)
        == _order_ref([r for r in ref if r["id"] > 5], [("price", True)])[3:10]
    )
    assert (
        q(["rating:asc", "price:desc"], filter="", limit=40)
        == _order_ref(ref, [("rating", False), ("price", True)])[:40]
    )
    assert q(["name"], filter="id < 50", limit=100) == _order_ref(
        [r for r in ref if r["id"] < 50], [("name", False)]
    )
    assert q(['meta["age"]:desc'], filter="", limit=30) == _order_ref(ref, [("age", True)])[:30]
    assert q(["views:desc"], filter="id >= 100", limit=50) == _order_ref(
        [r for r in ref if r["id"] >= 100], [("views", True)]
    )
    with pytest.raises(MilvusException, match="cannot order by"):
        q(["vec:asc"], filter="", limit=5)
    with pytest.raises(MilvusException, match="asc or desc"):
        q(["price:up"], filter="", limit=5)

    # search: the offset + limit nearest rows, ordered by the keys, then the page
    qv = rng.random((2, DIM), dtype=np.float32)
    d = ((qv.astype(np.float64)[:, None, :] - vecs.astype(np.float64)[None]) ** 2).sum(axis=2)
    res = client.search(
        name,
        data=qv.tolist(),
        limit=8,
        offset=2,
        output_fields=["price", "rating"],
        order_by_fields=[{"field": "price", "order": "desc"}, {"field": "rating", "order": "asc"}],
        **_strong(),
    )
    for qi in range(2):
        near = [ref[j] for j in np.argsort(d[qi], kind="stable")[:10]]  # best first
        want = _order_ref(near, [("price", True), ("rating", False)])[2:10]
        assert [h["id"] for h in res[qi]] == want
        for h in res[qi]:
            assert h["distance"] == pytest.approx(d[qi][h["id"]], rel=1e-5)


def test_cost_in_results(live):
    _, client = live
    name = "cost"
    client.create_collection(name, dimension=DIM, consistency_level="Strong", metric_type="L2")
    ins = client.insert(name, [{"id": i, "vector": [float(i)] * DIM} for i in range(5)])
    assert ins["cost"] > 0
    assert client.upsert(name, [{"id": 1, "vector": [9.0] * DIM}])["cost"] > 0
    got = client.query(name, ids=[1, 2], **_strong())
    assert got.extra["cost"] > 0
    hits = client.search(name, data=[[0.0] * DIM], limit=3, **_strong())
    assert hits.extra["cost"] > 0 and [h["id"] for h in hits[0]] == [0, 2, 3]
    assert client.delete(name, ids=[4])["cost"] > 0


# ---------------------------------------------------------------------------------- INT8 vectors


@pytest.mark.parametrize(("metric", "index"), [("L2", "HNSW"), ("IP", "FLAT"), ("COSINE", "HNSW")])
def test_int8_vectors(live, metric, index):
    import pyarrow.parquet as pq

    from tests.integration.test_cdc_support import store_of

    dep, client = live
    name = f"int8_{metric.lower()}"
    dim = 16
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.INT8_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 200} if index == "HNSW" else {}
    idx.add_index("v", index_type=index, metric_type=metric, params=params)
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(300, dim), dtype=np.int8)
    client.insert(name, [{"id": i, "v": x[i]} for i in range(200)])
    client.flush(name)  # sealed, with a FAISS index
    client.insert(name, [{"id": i, "v": x[i]} for i in range(200, 300)])  # growing
    q = rng.integers(-128, 128, size=(3, dim), dtype=np.int8)
    xf, qf = x.astype(np.float64), q.astype(np.float64)
    if metric == "L2":
        ref = ((qf[:, None, :] - xf[None]) ** 2).sum(axis=2)
    elif metric == "IP":
        ref = qf @ xf.T
    else:
        ref = (qf / np.linalg.norm(qf, axis=1, keepdims=True)) @ (
            xf / np.linalg.norm(xf, axis=1, keepdims=True)
        ).T
    res = client.search(
        name, data=list(q), limit=5, output_fields=["v"], search_params={"params": {"ef": 200}}, **_strong()
    )
    for i in range(3):
        want = np.sort(ref[i])[:5] if metric == "L2" else -np.sort(-ref[i])[:5]
        got = [h["distance"] for h in res[i]]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
        for h in res[i]:
            assert h["distance"] == pytest.approx(ref[i][h["id"]], rel=1e-5, abs=1e-3)
            stored = np.frombuffer(h["entity"]["v"], dtype=np.int8)
            np.testing.assert_array_equal(stored, x[h["id"]])
    got = client.query(name, filter="id in [3, 250]", output_fields=["v"], **_strong())
    assert sorted(r["id"] for r in got) == [3, 250]
    for r in got:  # pymilvus's query gives a byte vector as a one-element list of bytes
        v = r["v"][0] if isinstance(r["v"], list) else r["v"]
        np.testing.assert_array_equal(np.frombuffer(v, dtype=np.int8), x[r["id"]])
    # stored compactly: one byte per dimension in the Delta table's Parquet files
    cid = client.describe_collection(name)["collection_id"]
    files = store_of(dep).open(cid, "rows").file_uris()
    assert files
    for uri in files:
        col = pq.read_table(uri.removeprefix("file://"), columns=["v"]).column("v")
        assert pa.types.is_binary(col.type) or pa.types.is_fixed_size_binary(col.type)
        assert set(pc.binary_length(col).to_pylist()) == {dim}
    # a wrong dim is refused
    with pytest.raises(MilvusException):
        client.search(name, data=[np.zeros(dim + 1, dtype=np.int8)], limit=1, **_strong())
    # an index type Milvus does not offer for INT8_VECTOR is refused
    client.release_collection(name)
    client.drop_index(name, "v")
    bad = client.prepare_index_params()
    bad.add_index("v", index_type="IVF_PQ", metric_type=metric, params={"nlist": 4, "m": 4})
    with pytest.raises(MilvusException, match="INT8_VECTOR"):
        client.create_index(name, bad)


# ---------------------------------------------------------------------------------- added vector field


def test_added_vector_field_is_nullable_and_searched_where_set(live):
    _, client = live
    name = "added_vec"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(21)
    base = rng.random((60, DIM), dtype=np.float32)
    extra = rng.random((60, DIM), dtype=np.float32)
    client.insert(name, [{"id": i, "vec": base[i]} for i in range(30)])
    client.flush(name)  # sealed rows from before the field existed
    client.insert(name, [{"id": i, "vec": base[i]} for i in range(30, 40)])  # growing ones
    with pytest.raises(MilvusException):  # an added vector field must be nullable
        client.add_collection_field(name, "bad", DataType.FLOAT_VECTOR, dim=DIM)
    client.add_collection_field(name, "vec2", DataType.FLOAT_VECTOR, dim=DIM, nullable=True)
    client.insert(
        name, [{"id": i, "vec": base[i], "vec2": extra[i] if i % 2 == 0 else None} for i in range(40, 60)]
    )
    client.upsert(name, [{"id": 3, "vec2": extra[3]}], partial_update=True)  # an old row gets one
    has = {3} | {i for i in range(40, 60) if i % 2 == 0}
    idx2 = client.prepare_index_params()
    idx2.add_index("vec2", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx2)
    client.release_collection(name)
    client.load_collection(name)

    def check() -> None:
        q = rng.random((2, DIM), dtype=np.float32)
        res = client.search(
            name, data=q.tolist(), anns_field="vec2", limit=50, output_fields=["vec2"], **_strong()
        )
        for qi in range(2):
            assert sorted(h["id"] for h in res[qi]) == sorted(has)
            for h in res[qi]:
                want = float(((q[qi].astype(np.float64) - extra[h["id"]]) ** 2).sum())
                assert h["distance"] == pytest.approx(want, rel=1e-5, abs=1e-6)
                np.testing.assert_allclose(h["entity"]["vec2"], extra[h["id"]], rtol=1e-6)
        rows = client.query(name, filter="id in [1, 3, 35, 41, 42]", output_fields=["vec2"], **_strong())
        got = {r["id"]: r["vec2"] for r in rows}
        assert got[1] is None and got[35] is None and got[41] is None
        np.testing.assert_allclose(got[42], extra[42], rtol=1e-6)
        np.testing.assert_allclose(got[3], extra[3], rtol=1e-6)
        # the first vector field still finds every row
        assert (
            len(client.search(name, data=[base[0].tolist()], anns_field="vec", limit=100, **_strong())[0])
            == 60
        )

    check()  # growing and sealed rows
    client.flush(name)
    check()  # all sealed, with the new field's index built over rows with and without a vector

    # a dense vector field may be nullable from the start too
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("e", DataType.INT8_VECTOR, dim=DIM, nullable=True)
    idx = client.prepare_index_params()
    idx.add_index("e", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
    client.create_collection("nullable_e", schema=schema, index_params=idx, consistency_level="Strong")
    e = rng.integers(-128, 128, size=(10, DIM), dtype=np.int8)
    client.insert("nullable_e", [{"id": i, "e": e[i] if i % 3 else None} for i in range(10)])
    hits = client.search("nullable_e", data=[e[1]], limit=10, **_strong())
    assert sorted(h["id"] for h in hits[0]) == [i for i in range(10) if i % 3]
    assert hits[0][0]["id"] == 1 and hits[0][0]["distance"] == 0.0


def test_drop_collection_field(live):
    _, client = live
    name = "drop_field"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("color", DataType.VARCHAR, max_length=8)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    client.insert(name, [{"id": i, "vec": [float(i)] * DIM, "color": "red", "n": i} for i in range(10)])
    client.flush(name)
    client.drop_collection_field(name, field_name="color")
    assert [f["name"] for f in client.describe_collection(name)["fields"]] == ["id", "vec", "n"]
    rows = client.query(name, filter="id < 3", output_fields=["*"], **_strong())
    assert sorted(rows[0]) == ["id", "n", "vec"]
    with pytest.raises(MilvusException):
        client.query(name, filter='color == "red"', output_fields=["n"], **_strong())
    with pytest.raises(MilvusException, match="primary key"):
        client.drop_collection_field(name, field_name="id")
    with pytest.raises(MilvusException, match="only vector field"):
        client.drop_collection_field(name, field_name="vec")
    with pytest.raises(MilvusException, match="dropped field"):  # its old values are still stored
        client.add_collection_field(name, "color", DataType.INT64, nullable=True)
    client.insert(name, [{"id": 20, "vec": [1.0] * DIM, "n": 20}])  # writes without the field
    assert client.query(name, filter="id == 20", output_fields=["n"], **_strong())[0]["n"] == 20
    client.add_collection_field(name, "colour", DataType.VARCHAR, max_length=8, nullable=True)
    assert client.query(name, filter="id == 1", output_fields=["colour"], **_strong())[0]["colour"] is None


# ---------------------------------------------------------------------------------- restart


def test_partial_updates_and_int8_survive_restart(live):
    """Run last in this module: kills every walvus process of the module's deployment
    (``kill -9``) and starts them again on the same data."""
    dep, client = live
    name = "restart_dm"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.INT8_VECTOR, dim=8)
    schema.add_field("price", DataType.DOUBLE)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 100})
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, size=(40, 8), dtype=np.int8)
    client.insert(name, [{"id": i, "v": x[i], "price": float(i)} for i in range(40)])
    client.flush(name)
    client.upsert(name, [{"id": i, "price": -1.0} for i in range(0, 40, 3)], partial_update=True)  # growing
    want = {i: (-1.0 if i % 3 == 0 else float(i)) for i in range(40)}
    # schema changes too: a vector field added (set on one row), a scalar field added then dropped
    client.add_collection_field(name, "w", DataType.FLOAT_VECTOR, dim=4, nullable=True)
    client.add_collection_field(name, "tmp", DataType.INT64, nullable=True)
    client.drop_collection_field(name, field_name="tmp")
    client.upsert(name, [{"id": 5, "w": [1.0, 2.0, 3.0, 4.0]}], partial_update=True)
    idx_w = client.prepare_index_params()
    idx_w.add_index("w", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx_w)
    for proc in ("gateway", "streams", "indexer"):
        dep.kill(proc)
    dep.start("streams", "indexer", "gateway")
    from pymilvus import MilvusClient

    c = MilvusClient(dep.uri)
    c.load_collection(name)
    got = c.query(name, filter="id >= 0", output_fields=["price"], **_strong())
    assert {r["id"]: r["price"] for r in got} == want
    hits = c.search(name, data=[x[7]], anns_field="v", limit=1, output_fields=["price"], **_strong())
    assert hits[0][0]["id"] == 7 and hits[0][0]["distance"] == 0.0
    hits = c.search(name, data=[[1.0, 2.0, 3.0, 4.0]], anns_field="w", limit=10, **_strong())
    assert [h["id"] for h in hits[0]] == [5]
    assert [f["name"] for f in c.describe_collection(name)["fields"]] == ["id", "v", "price", "w"]
    c.close()


def test_dynamic_field_turned_on_later_keeps_old_rows_and_takes_new_keys(live):
    _, client = live
    name = "dyn_later"
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    client.insert(name, [{"id": i, "vec": [float(i), 0.0, 0.0, 0.0]} for i in range(4)])
    client.flush(name)  # sealed rows from before the dynamic field
    client.insert(name, [{"id": 4, "vec": [4.0, 0.0, 0.0, 0.0]}])  # growing, still without it
    with pytest.raises(MilvusException):
        client.insert(name, [{"id": 9, "vec": [9.0, 0.0, 0.0, 0.0], "color": "red"}])
    client.alter_collection_properties(name, {"dynamicfield.enabled": True})
    assert client.describe_collection(name)["enable_dynamic_field"] is True
    client.insert(name, [{"id": 5, "vec": [5.0, 0.0, 0.0, 0.0], "color": "red"}])
    got = client.query(name, filter="id >= 0", output_fields=["id", "color"], **_strong())
    assert sorted(r["id"] for r in got) == [0, 1, 2, 3, 4, 5]
    assert [r["id"] for r in client.query(name, filter='color == "red"', **_strong())] == [5]
    hits = client.search(name, [[5.0, 0.0, 0.0, 0.0]], limit=2, filter='color == "red"', **_strong())
    assert [h["id"] for h in hits[0]] == [5]
    client.flush(name)  # old and new rows sealed together
    assert [r["id"] for r in client.query(name, filter='color == "red"', **_strong())] == [5]
    assert client.query(name, filter="", output_fields=["count(*)"], **_strong())[0]["count(*)"] == 6
    with pytest.raises(MilvusException, match="cannot be disabled"):
        client.alter_collection_properties(name, {"dynamicfield.enabled": False})
