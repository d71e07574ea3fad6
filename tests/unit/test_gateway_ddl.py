"""Collections, partitions, indexes and loading through the real pymilvus MilvusClient."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from schemas.catalog import CatalogEvent
from tests.memory import RunningGateway, running_gateway

_names = itertools.count()


def unique(prefix: str = "c") -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def progress() -> dict[str, tuple[int, int, int]]:
    return {}


@pytest.fixture(scope="module")
def gw(progress: dict[str, tuple[int, int, int]]) -> Iterator[RunningGateway]:
    def index_progress(info, field):  # noqa: ANN001, ANN202
        return progress.get(info.name, (0, 0, 0))

    with running_gateway(index_progress=index_progress) as gw:
        yield gw


def full_schema() -> object:
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True, description="all types")
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=8)
    s.add_field("half", DataType.FLOAT16_VECTOR, dim=4)
    s.add_field("bf", DataType.BFLOAT16_VECTOR, dim=4)
    s.add_field("bits", DataType.BINARY_VECTOR, dim=16)
    s.add_field("flag", DataType.BOOL)
    s.add_field("i8", DataType.INT8)
    s.add_field("i32", DataType.INT32, nullable=True)
    s.add_field("f", DataType.FLOAT, default_value=0.5)
    s.add_field("d", DataType.DOUBLE)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=16)
    s.add_field("doc", DataType.JSON, nullable=True)
    return s


def test_quick_setup_creates_indexes_and_loads(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique("quick")
    client.create_collection(name, dimension=8)
    desc = client.describe_collection(name)
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["id"]["is_primary"] and fields["id"]["type"] == DataType.INT64
    assert fields["vector"]["params"]["dim"] == 8
    assert desc["enable_dynamic_field"] and desc["consistency_level"] == 2
    assert client.list_indexes(name) == ["vector"]
    index = client.describe_index(name, "vector")
    assert index["index_type"] == "AUTOINDEX" and index["metric_type"] == "COSINE"
    assert index["state"] == "Finished"
    assert str(client.get_load_state(name)["state"]) == "Loaded"
    assert ("load", (name, None)) in gw.searcher.calls
    info = gw.walvus.catalog.require(name)
    assert info.loaded and info.indexes["vector"].index_id > 0


def test_describe_has_list_drop(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, schema=full_schema())
    desc = client.describe_collection(name)
    types = {f["name"]: f["type"] for f in desc["fields"]}
    assert types["half"] == DataType.FLOAT16_VECTOR and types["tags"] == DataType.ARRAY
    tags = next(f for f in desc["fields"] if f["name"] == "tags")
    assert tags["element_type"] == DataType.VARCHAR and tags["params"]["max_capacity"] == 8
    assert next(f for f in desc["fields"] if f["name"] == "i32")["nullable"]
    assert desc["description"] == "all types"
    assert client.has_collection(name) and name in client.list_collections()
    client.drop_collection(name)
    assert not client.has_collection(name) and name not in client.list_collections()
    client.drop_collection(name)  # dropping a missing collection succeeds, as in Milvus
    with pytest.raises(MilvusException, match=f"collection not found\\[collection={name}\\]") as err:
        client.describe_collection(name)
    assert err.value.code == 100


def test_create_twice_is_idempotent_but_a_different_schema_is_refused(client: MilvusClient) -> None:
    name = unique()
    schema = full_schema()
    client.create_collection(name, schema=schema)
    client.create_collection(name, schema=schema)
    other = MilvusClient.create_schema()
    other.add_field("id", DataType.INT64, is_primary=True)
    other.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    with pytest.raises(
        MilvusException, match="create duplicate collection with different parameters.*already exists"
    ):
        client.create_collection(name, schema=other)


def test_invalid_schema_is_refused_with_reason(client: MilvusClient) -> None:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=40000)
    with pytest.raises(MilvusException, match="dim must be between 1 and 32768") as err:
        client.create_collection(unique(), schema=schema)
    assert err.value.code == 1100


def test_partitions(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=4)
    client.release_collection(name)
    assert client.describe_collection(name)["num_partitions"] == 1  # _default, as Milvus says
    client.create_partition(name, "p1")
    assert client.describe_collection(name)["num_partitions"] == 2
    assert client.has_partition(name, "p1") and not client.has_partition(name, "p2")
    assert client.list_partitions(name) == ["_default", "p1"]
    client.load_partitions(name, ["p1"])
    assert gw.walvus.catalog.require(name).loaded_partitions == ("p1",)
    assert str(client.get_load_state(name, partition_name="p1")["state"]) == "Loaded"
    assert str(client.get_load_state(name, partition_name="_default")["state"]) == "NotLoad"
    with pytest.raises(MilvusException, match="partition p1 cannot be dropped, partition is loaded"):
        client.drop_partition(name, "p1")
    client.release_partitions(name, ["p1"])
    assert not gw.walvus.catalog.require(name).loaded
    client.drop_partition(name, "p1")
    assert client.list_partitions(name) == ["_default"]
    with pytest.raises(MilvusException, match="partition not found") as err:
        client.load_partitions(name, ["nope"])
    assert err.value.code == 200


def test_partition_key_collection_lists_hidden_partitions(client: MilvusClient) -> None:
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    name = unique()
    client.create_collection(name, schema=schema, num_partitions=4)
    assert client.list_partitions(name) == [f"_default_{i}" for i in range(4)]
    assert client.describe_collection(name)["num_partitions"] == 4


def test_index_lifecycle_and_progress(
    client: MilvusClient, gw: RunningGateway, progress: dict[str, tuple[int, int, int]]
) -> None:
    name = unique()
    client.create_collection(name, schema=full_schema())
    params = client.prepare_index_params()
    params.add_index(
        "vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 64}, index_name="vec_idx"
    )
    client.create_index(name, params)
    index = client.describe_index(name, "vec_idx")
    assert index["index_type"] == "IVF_FLAT" and index["metric_type"] == "L2" and index["nlist"] == "64"
    stored = gw.walvus.catalog.require(name).indexes["vec"]
    assert stored.params == {"nlist": 64} and stored.metric_type == "L2"
    client.create_index(name, params)  # same index again: no-op
    progress[name] = (40, 100, 60)
    index = client.describe_index(name, "vec_idx")
    assert (index["state"], index["indexed_rows"], index["pending_index_rows"]) == ("InProgress", 40, 60)
    progress[name] = (100, 100, 0)
    assert client.describe_index(name, "vec_idx")["state"] == "Finished"
    progress[name] = (40, 100, 60, "1 of 2 sealed segments failed: ArrowInvalid: boom")
    assert client.describe_index(name, "vec_idx")["state"] == "Failed"
    state, reason = client._get_connection().get_index_state(name, "vec_idx")
    assert reason == "1 of 2 sealed segments failed: ArrowInvalid: boom"
    progress[name] = (100, 100, 0)
    other = client.prepare_index_params()
    other.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_idx")
    with pytest.raises(MilvusException, match="at most one distinct index is allowed per field"):
        client.create_index(name, other)
    scalar = client.prepare_index_params()
    scalar.add_index("i8", index_type="INVERTED")
    client.create_index(name, scalar)
    assert sorted(client.list_indexes(name)) == ["i8", "vec_idx"]
    client.drop_index(name, "vec_idx")
    assert client.list_indexes(name) == ["i8"]
    assert gw.walvus.catalog.require(name).event == CatalogEvent.DROP_INDEX


@pytest.mark.parametrize(
    ("index_type", "metric", "params", "message"),
    [
        ("IVF_PQ", "L2", {"m": 3}, "param m=3 must divide dim=8"),
        ("HNSW", "HAMMING", {}, "metric HAMMING is not valid for FLOAT_VECTOR"),
        ("NOPE", "L2", {}, "index type NOPE is not supported"),
    ],
)
def test_bad_index_params_are_refused(
    client: MilvusClient, index_type: str, metric: str, params: dict, message: str
) -> None:
    name = unique()
    client.create_collection(name, schema=full_schema())
    ip = client.prepare_index_params()
    ip.add_index("vec", index_type=index_type, metric_type=metric, params=params)
    with pytest.raises(MilvusException, match=message) as err:
        client.create_index(name, ip)
    assert err.value.code == 1100


def test_load_needs_vector_indexes_and_drop_index_needs_release(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, schema=full_schema())
    with pytest.raises(MilvusException, match="there is no vector index on field") as err:
        client.load_collection(name)
    assert err.value.code == 700
    ip = client.prepare_index_params()
    for field, metric in (("vec", "IP"), ("half", "L2"), ("bf", "COSINE"), ("bits", "HAMMING")):
        ip.add_index(field, metric_type=metric)
    client.create_index(name, ip)
    client.load_collection(name)
    with pytest.raises(
        MilvusException,
        match="vector index cannot be dropped on loaded collection .*, please release it first",
    ):
        client.drop_index(name, "vec")
    client.release_collection(name)
    assert str(client.get_load_state(name)["state"]) == "NotLoad"
    client.drop_index(name, "vec")


def test_dropping_an_index_that_is_not_there_changes_nothing(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, schema=full_schema())
    client.drop_index(name, "vec")
    assert client.list_indexes(name) == []
    ip = client.prepare_index_params()
    ip.add_index("vec", metric_type="L2")
    client.create_index(name, ip)
    client.drop_index(name, "no_such_index")
    assert client.list_indexes(name) == ["vec"]


def test_alter_properties(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=4)
    client.alter_collection_properties(name, {"collection.ttl.seconds": 60})
    assert client.describe_collection(name)["properties"]["collection.ttl.seconds"] == "60"
    with pytest.raises(MilvusException, match="can not alter mmap properties if collection loaded"):
        client.alter_collection_properties(name, {"mmap.enabled": True})
    client.release_collection(name)
    client.alter_collection_properties(name, {"mmap.enabled": True})
    assert gw.walvus.catalog.require(name).properties == {
        "collection.ttl.seconds": "60",
        "mmap.enabled": "True",
    }
    client.drop_collection_properties(name, ["collection.ttl.seconds"])
    assert client.describe_collection(name)["properties"] == {
        "mmap.enabled": "True"
    }  # kept as given, as Milvus does
    with pytest.raises(MilvusException, match="collection.ttl.seconds must be >= 0"):
        client.alter_collection_properties(name, {"collection.ttl.seconds": -1})


def test_add_field_then_insert_with_a_stale_cached_schema(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2, enable_dynamic_field=False)
    client.insert(name, [{"id": 1, "vector": [1, 2]}])  # caches the schema in the client
    client.add_collection_field(name, "note", DataType.VARCHAR, max_length=10, nullable=True)
    info = gw.walvus.catalog.require(name)
    assert info.schema.version == 2 and info.schema.field("note").nullable
    # the cached schema is stale: the gateway says so, pymilvus refreshes it and retries
    client.insert(name, [{"id": 2, "vector": [1, 2], "note": "hi"}])
    assert client.get(name, ids=[2], output_fields=["note"])[0]["note"] == "hi"


def test_a_nullable_sparse_field_can_be_added(client: MilvusClient, gw: RunningGateway) -> None:
    # a vector field added without nullable=True: pymilvus refuses it first (the schema check is
    # in test_schemas_collection.py)
    name = unique()
    client.create_collection(name, dimension=2)
    client.add_collection_field(name, "sparse", DataType.SPARSE_FLOAT_VECTOR, nullable=True)
    assert gw.walvus.catalog.require(name).schema.field("sparse").nullable


def test_statistics(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.create_partition(name, "p")
    client.insert(name, [{"id": i, "vector": [i, 1]} for i in range(5)])
    client.insert(name, [{"id": 10, "vector": [1, 1]}], partition_name="p")
    assert client.get_collection_stats(name)["row_count"] == 6
    assert client.get_partition_stats(name, "p")["row_count"] == 1


def test_unimplemented_rpcs_say_so(gw: RunningGateway) -> None:
    from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

    with grpc.insecure_channel(gw.uri.removeprefix("http://")) as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Dummy(milvus_pb2.DummyRequest(request_type="ping"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "walvus does not implement the Milvus RPC Dummy" in err.value.details()


def test_default_database(client: MilvusClient) -> None:
    assert client.list_databases()[0] == "default"
    assert client.describe_database("default")["name"] == "default"
    with pytest.raises(MilvusException, match="database not found") as err:
        client.describe_database("nowhere")
    assert err.value.code == 800


def test_server_version_and_timestamp(client: MilvusClient) -> None:
    assert "walvus" in client.get_server_version()


def _schema_with(name: str, dtype: DataType, **kw: object) -> object:
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    s.add_field(name, dtype, **kw)
    return s


@pytest.mark.parametrize("name", ["like", "and", "OR", "Not", "in", "true", "False", "null", "exists", "is"])
def test_filter_keywords_are_refused_as_field_names(client: MilvusClient, name: str) -> None:
    with pytest.raises(MilvusException, match=f"Invalid field name: {name}. {name} is keyword") as err:
        client.create_collection(unique(), schema=_schema_with(name, DataType.INT64))
    assert err.value.code == 1701
    assert not [c for c in client.list_collections() if c.startswith("c_") and name in c]


def test_keyword_field_name_is_refused_by_add_field(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, dimension=4)
    with pytest.raises(MilvusException, match="like is keyword"):
        client.add_collection_field(name, "like", DataType.INT64, nullable=True)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            lambda: _pk_default(),
            "primary field not support default_value",
        ),
        (
            lambda: _schema_with("v2", DataType.FLOAT_VECTOR, dim=4, default_value=1.0),
            "not support default_value",
        ),
        (
            lambda: _schema_with("n", DataType.INT32, default_value="x"),
            r"type \(Int32\) of field \(n\) is not equal",
        ),
        (
            lambda: _schema_with("n", DataType.INT8, default_value=128),
            r"128 out of range -128 <= value <= 127",
        ),
        (
            lambda: _schema_with("s", DataType.VARCHAR, max_length=2, default_value="abc"),
            "exceeds max length",
        ),
        (lambda: _schema_with("d", DataType.DOUBLE, default_value="2.6"), r"type \(Double\) of field \(d\)"),
        (
            lambda: _schema_with("pkey", DataType.INT64, is_partition_key=True, nullable=True),
            "partition key field not support nullable",
        ),
    ],
)
def test_schemas_milvus_refuses_are_refused(client: MilvusClient, schema: object, message: str) -> None:
    name = unique()
    with pytest.raises(MilvusException, match=message) as err:
        client.create_collection(name, schema=schema())  # type: ignore[operator]
    assert err.value.code == 1100
    assert not client.has_collection(name)


def _pk_default() -> object:
    s = MilvusClient.create_schema()
    s.add_field("id", DataType.INT64, is_primary=True, default_value=7)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    return s


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1abc", "the first character of a collection name must be an underscore or letter"),
        ("a-b", "collection name can only contain numbers, letters and underscores"),
        ("x" * 256, "the length of a collection name must be less than 255 characters"),
    ],
)
def test_has_collection_and_has_partition_refuse_invalid_names(
    client: MilvusClient, name: str, message: str
) -> None:
    with pytest.raises(
        MilvusException, match=f"Invalid collection name: {name}. {message}: invalid parameter"
    ) as err:
        client.has_collection(name)
    assert err.value.code == 1100
    existing = unique()
    client.create_collection(existing, dimension=4)
    with pytest.raises(MilvusException, match="Invalid collection name"):
        client.has_partition(name, "_default")
    bad_partition = name.replace("collection", "partition")
    with pytest.raises(MilvusException, match="Invalid partition name") as err:
        client.has_partition(existing, bad_partition)
    assert err.value.code == 1100
    assert not client.has_partition(existing, "p_missing") and not client.has_collection("c_missing")
    for call in (client.drop_collection, client.load_collection, client.release_collection):
        with pytest.raises(MilvusException, match="Invalid collection name") as err:
            call(name)
        assert err.value.code == 1100
