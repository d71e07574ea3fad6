"""Insert, upsert, delete and flush through pymilvus: what reaches the WAL and the searcher."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from schemas.collection import META_FIELD
from schemas.wal import Op
from tests.memory import RunningGateway, running_gateway
from walvus.settings import LimitSettings

_names = itertools.count()


def unique(prefix: str = "w") -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway(limits=LimitSettings(max_request_mb=1)) as gw:
        yield gw


def records(gw: RunningGateway, name: str, op: Op) -> list:
    cid = gw.walvus.catalog.require(name).collection_id
    return [r for r in gw.log.records(op) if r.header.collection_id == cid]


def rich_collection(client: MilvusClient) -> str:
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("half", DataType.FLOAT16_VECTOR, dim=4)
    s.add_field("bf", DataType.BFLOAT16_VECTOR, dim=4)
    s.add_field("bits", DataType.BINARY_VECTOR, dim=16)
    s.add_field("age", DataType.INT16, nullable=True)
    s.add_field("name", DataType.VARCHAR, max_length=8, default_value="anon")
    s.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=3)
    s.add_field("doc", DataType.JSON, nullable=True)
    name = unique("rich")
    ip = client.prepare_index_params()
    for field, metric in (("vec", "L2"), ("half", "IP"), ("bf", "IP"), ("bits", "HAMMING")):
        ip.add_index(field, metric_type=metric)
    client.create_collection(name, schema=s, index_params=ip)
    return name


def rich_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "id": start + i,
            "vec": [float(i), 0.5, 0.0, 1.0],
            "half": np.array([i, 1, 0, 0], dtype=np.float16),
            "bf": [float(i), 1.0, 0.0, 0.0],  # bfloat16 from plain floats
            "bits": bytes([i, 255 - i]),
            "age": None if i % 2 else i,
            **({"name": f"n{i}"} if i % 3 else {}),
            "tags": list(range(i % 4)),
            "doc": {"k": i} if i % 2 else None,
            "extra": f"x{i}",
        }
        for i in range(n)
    ]


def test_insert_writes_one_wal_record_and_notes_the_write(client: MilvusClient, gw: RunningGateway) -> None:
    name = rich_collection(client)
    before = len(gw.searcher.writes)
    res = client.insert(name, rich_rows(4))
    assert res["insert_count"] == 4 and list(res["ids"]) == [0, 1, 2, 3]
    (rec,) = records(gw, name, Op.INSERT)
    batch = rec.batch.to_pydict()
    assert batch["age"] == [0, None, 2, None]
    assert batch["name"] == ["anon", "n1", "n2", "anon"]  # default for missing values
    assert batch["tags"] == [[], [0], [0, 1], [0, 1, 2]]
    assert batch["vec"][1] == [1.0, 0.5, 0.0, 1.0]
    assert batch["half"][2] == np.array([2, 1, 0, 0], dtype=np.float16).tobytes()
    assert batch["bits"][3] == bytes([3, 252])
    assert [None if d is None else __import__("json").loads(d) for d in batch["doc"]] == [
        None,
        {"k": 1},
        None,
        {"k": 3},
    ]
    assert __import__("json").loads(batch[META_FIELD][1]) == {"extra": "x1"}
    cid, positions, ts = gw.searcher.writes[before]
    assert cid == rec.header.collection_id and positions == {0: 0} and ts == rec.header.ts


def test_mutation_timestamp_is_the_write_ts(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    handler = client._get_connection()
    result = handler.insert_rows(name, [{"id": 1, "vector": [1, 2]}])
    assert result.timestamp == records(gw, name, Op.INSERT)[0].header.ts


def test_auto_id_returns_the_allocated_keys(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2, auto_id=True)
    res = client.insert(name, [{"vector": [1, 2]}, {"vector": [3, 4]}])
    ids = list(res["ids"])
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    assert records(gw, name, Op.INSERT)[0].batch.column("id").to_pylist() == ids


def test_upsert_and_varchar_keys(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2, id_type="string", max_length=16)
    client.insert(name, [{"id": "a", "vector": [1, 1]}])
    res = client.upsert(name, [{"id": "a", "vector": [2, 2]}, {"id": "b", "vector": [3, 3]}])
    assert res["upsert_count"] == 2 and list(res["ids"]) == ["a", "b"]
    (rec,) = records(gw, name, Op.UPSERT)
    assert rec.batch.column("id").to_pylist() == ["a", "b"]
    assert client.get(name, ids=["a"])[0]["vector"] == [2.0, 2.0]


def test_delete_by_ids_needs_no_query(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.insert(name, [{"id": i, "vector": [i, 1]} for i in range(5)])
    queries = sum(1 for kind, _ in gw.searcher.calls if kind == "query")
    assert client.delete(name, ids=[1, 3])["delete_count"] == 2
    assert sum(1 for kind, _ in gw.searcher.calls if kind == "query") == queries
    (rec,) = records(gw, name, Op.DELETE)
    assert sorted(rec.batch.column(0).to_pylist()) == [1, 3]
    assert sorted(r["id"] for r in client.query(name, filter="id >= 0")) == [0, 2, 4]


def test_delete_by_expression_queries_matching_keys(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.insert(name, [{"id": i, "vector": [i, 1], "color": "red" if i % 2 else "blue"} for i in range(6)])
    assert client.delete(name, filter='color == "red" and id > 1')["delete_count"] == 2
    assert sorted(records(gw, name, Op.DELETE)[0].batch.column(0).to_pylist()) == [3, 5]
    assert client.delete(name, filter="id in {keys}", filter_params={"keys": [0]})["delete_count"] == 1
    assert client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 3


def test_delete_in_a_partition(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.create_partition(name, "p")
    client.insert(name, [{"id": 1, "vector": [1, 1]}], partition_name="p")
    client.delete(name, ids=[1], partition_name="p")
    assert records(gw, name, Op.DELETE)[0].header.partition == "p"
    with pytest.raises(MilvusException, match="partition not found"):
        client.delete(name, ids=[1], partition_name="nope")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"id": 1, "vector": [1.0, 2.0, 3.0]}],
            r"the dim \(3\) of field data\(vector\) is not equal to schema dim \(2\)",
        ),
        ([{"id": 1, "vector": [1.0, float("nan")]}], "NaN or infinite"),
        ([{"id": 1, "vector": [1, 2], "v": "x" * 20}, {"id": 1, "vector": [1, 2]}], None),
    ],
)
def test_rejected_batches_write_nothing(
    client: MilvusClient, gw: RunningGateway, rows: list[dict], message: str | None
) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    if message is None:  # a duplicate key inside one upsert batch
        with pytest.raises(MilvusException, match="duplicate primary key 1"):
            client.upsert(name, rows)
    else:
        with pytest.raises(MilvusException, match=message) as err:
            client.insert(name, rows)
        assert err.value.code == 1100
    assert records(gw, name, Op.INSERT) == [] and records(gw, name, Op.UPSERT) == []


def test_insert_into_an_invalid_partition_name_is_a_bad_parameter(client: MilvusClient) -> None:
    name = rich_collection(client)
    with pytest.raises(MilvusException, match="Invalid partition name: 12 s. the first character"):
        client.insert(name, rich_rows(1), partition_name="12 s")
    with pytest.raises(MilvusException, match="partition not found"):
        client.insert(name, rich_rows(1), partition_name="nope")


def test_varchar_over_max_length_is_refused(client: MilvusClient, gw: RunningGateway) -> None:
    name = rich_collection(client)
    rows = rich_rows(1)
    rows[0]["name"] = "much too long"
    with pytest.raises(
        MilvusException, match="length of varchar field name exceeds max length: .* over max_length 8"
    ):
        client.insert(name, rows)
    assert records(gw, name, Op.INSERT) == []


def test_request_size_limit(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=256)
    rows = [{"id": i, "vector": np.random.rand(256).tolist()} for i in range(1500)]  # ~1.5 MB
    with pytest.raises(MilvusException, match="over the limit of 1 MB") as err:
        client.insert(name, rows)
    assert err.value.code == 1102
    assert records(gw, name, Op.INSERT) == []


def test_flush(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.insert(name, [{"id": 1, "vector": [1, 2]}])
    client.flush(name)
    with pytest.raises(MilvusException, match="collection not found"):
        client.flush(unique())


def test_partial_update_merges_and_refuses_incomplete_new_rows(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.insert(name, [{"id": 1, "vector": [1, 2], "color": "red", "n": 1}])
    client.upsert(name, [{"id": 1, "color": "blue"}], partial_update=True)
    row = client.query(name, ids=[1], output_fields=["*"], consistency_level="Strong")[0]
    assert row["vector"] == [1, 2] and row["color"] == "blue" and row["n"] == 1
    with pytest.raises(MilvusException, match="partial update: primary key"):
        client.upsert(name, [{"id": 2, "color": "x"}], partial_update=True)
    assert client.query(name, ids=[2], consistency_level="Strong") == []


def test_writes_to_unknown_collections(client: MilvusClient) -> None:
    with pytest.raises(MilvusException, match="collection not found") as err:
        client.delete(unique(), filter="id > 0")
    assert err.value.code == 100
