"""Pure conversions of the gateway, no server: schemas, FieldData columns, params, rankers, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from pymilvus.grpc_gen import common_pb2, schema_pb2

from gateway.errors import PartitionNotLoaded, status_for
from gateway.field_data import columns_from_field_data, field_data_from_column, packed
from gateway.params import output_plan, query_vectors, template_values
from gateway.ranker import Ranker
from gateway.schema_convert import schema_from_proto, schema_to_proto
from schemas.catalog import CollectionInfo
from schemas.collection import META_FIELD, CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import (
    CapacityExceeded,
    CollectionNotFound,
    CollectionNotLoaded,
    FieldNameInvalid,
    IndexNotFound,
    InvalidArgument,
    PartitionNotFound,
    RequestTooLarge,
    ValidationError,
)
from schemas.filters import FilterError
from schemas.index_spec import IndexSpecError
from schemas.types import DataType

SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("vec", DataType.FLOAT_VECTOR, dim=4),
            FieldSchema("half", DataType.FLOAT16_VECTOR, dim=4),
            FieldSchema("bits", DataType.BINARY_VECTOR, dim=16),
            FieldSchema("age", DataType.INT8, nullable=True),
            FieldSchema("name", DataType.VARCHAR, max_length=20, default_value="anon"),
            FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=5),
            FieldSchema("doc", DataType.JSON, nullable=True),
        ),
        enable_dynamic_field=True,
    )
)


def test_schema_round_trip_keeps_every_attribute() -> None:
    info = CollectionInfo("c", 1, SCHEMA)
    back = schema_from_proto(
        schema_pb2.CollectionSchema.FromString(schema_to_proto(info).SerializeToString())
    )
    assert [f.to_dict() | {"field_id": 0} for f in back.fields] == [
        f.to_dict() | {"field_id": 0} for f in SCHEMA.fields
    ]
    assert back.enable_dynamic_field


def test_schema_from_proto_reads_type_params_and_skips_meta() -> None:
    pb = schema_pb2.CollectionSchema(name="c", autoID=True, enable_dynamic_field=True)
    pk = pb.fields.add(name="pk", data_type=DataType.INT64, is_primary_key=True)
    vec = pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR)
    vec.type_params.add(key="dim", value="8")
    pb.fields.add(name=META_FIELD, data_type=DataType.JSON, is_dynamic=True)
    assert pk.name == "pk"
    schema = schema_from_proto(pb)
    assert [f.name for f in schema.fields] == ["pk", "v"]
    assert schema.fields[0].auto_id and schema.fields[1].dim == 8


def test_unsupported_type_is_a_clear_schema_error() -> None:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="g", data_type=schema_pb2.Geometry)
    with pytest.raises(InvalidArgument, match="Geometry is not supported"):
        schema_from_proto(pb)


def _fd(name: str, dtype: DataType, **kw) -> schema_pb2.FieldData:
    return schema_pb2.FieldData(field_name=name, type=int(dtype), **kw)


def test_columns_from_field_data_are_vectorised_and_honour_valid_data() -> None:
    n = 3
    vec = _fd("vec", DataType.FLOAT_VECTOR)
    vec.vectors.dim = 4
    vec.vectors.float_vector.data.extend(np.arange(12, dtype=np.float32).tolist())
    half = _fd("half", DataType.FLOAT16_VECTOR)
    half.vectors.dim = 4
    half.vectors.float16_vector = np.ones((3, 4), dtype=np.float16).tobytes()
    age = _fd("age", DataType.INT8, valid_data=[True, False, True])
    age.scalars.int_data.data.extend([7, 9])  # only the valid values, as pymilvus sends them
    tags = _fd("tags", DataType.ARRAY)
    for row in ([1], [], [2, 3]):
        tags.scalars.array_data.data.add().long_data.data.extend(row)
    meta = schema_pb2.FieldData(field_name=META_FIELD, type=DataType.JSON, is_dynamic=True)
    meta.scalars.json_data.data.extend([b'{"a": 1}', b"{}", b'{"b": 2}'])
    cols = columns_from_field_data(SCHEMA, [vec, half, age, tags, meta], n)
    assert cols["vec"].shape == (3, 4) and cols["vec"].dtype == np.float32
    assert cols["half"].shape == (3, 8) and cols["half"].dtype == np.uint8
    assert cols["age"].to_pylist() == [7, None, 9]
    assert cols["tags"] == [[1], [], [2, 3]]
    assert cols[META_FIELD] == [b'{"a": 1}', b"{}", b'{"b": 2}']


def test_wrong_dimension_names_the_field() -> None:
    vec = _fd("vec", DataType.FLOAT_VECTOR)
    vec.vectors.dim = 3
    vec.vectors.float_vector.data.extend([1.0] * 6)
    with pytest.raises(
        ValidationError, match=r"the dim \(3\) of field data\(vec\) is not equal to schema dim \(4\)"
    ):
        columns_from_field_data(SCHEMA, [vec], 2)


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match="'age' is INT8, but the request carries VarChar"):
        columns_from_field_data(SCHEMA, [_fd("age", DataType.VARCHAR)], 0)


def test_field_data_from_arrow_columns() -> None:
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 4)
    fd = field_data_from_column("vec", vec, SCHEMA.field("vec"))
    assert fd.vectors.dim == 4 and list(fd.vectors.float_vector.data) == list(range(8))
    bits = pa.array([b"\x01\x02", b"\x03\x04"], type=pa.binary(2)).slice(1)
    fd = field_data_from_column("bits", bits, SCHEMA.field("bits"))
    assert fd.vectors.binary_vector == b"\x03\x04" and fd.vectors.dim == 16
    fd = field_data_from_column("age", pa.array([1, None], type=pa.int8()), SCHEMA.field("age"))
    assert list(fd.valid_data) == [True, False] and list(fd.scalars.int_data.data) == [1, 0]
    fd = field_data_from_column(META_FIELD, pa.array(['{"x": 1}', None]), None)
    assert fd.is_dynamic and list(fd.scalars.json_data.data) == [b'{"x": 1}', b"{}"]
    fd = field_data_from_column(
        "tags", pa.array([[1, 2], None], type=pa.list_(pa.int64())), SCHEMA.field("tags")
    )
    assert [list(s.long_data.data) for s in fd.scalars.array_data.data] == [[1, 2], []]
    assert list(fd.valid_data) == [True, False]


def test_packed_floats_parse_back() -> None:
    values = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    arr = schema_pb2.FloatArray.FromString(packed(1, values))
    assert list(arr.data) == [0.5, -1.25, 3.0]


def test_query_vectors_decode_each_placeholder_type() -> None:
    group = common_pb2.PlaceholderGroup()
    ph = group.placeholders.add(tag="$0", type=common_pb2.PlaceholderType.Float16Vector)
    ph.values.append(np.array([1, 2, 3, 4], dtype=np.float16).tobytes())
    out = query_vectors(SCHEMA.field("vec"), group.SerializeToString())
    assert out.dtype == np.float32 and out.tolist() == [[1, 2, 3, 4]]
    ph.type = common_pb2.PlaceholderType.FloatVector
    with pytest.raises(InvalidArgument, match=r"the dim \(2\) of field data\(vec\)"):
        query_vectors(SCHEMA.field("vec"), group.SerializeToString())


def test_output_plan_resolves_star_dynamic_keys_and_count() -> None:
    plan = output_plan(SCHEMA, ["*"])
    assert plan.columns[-1] == META_FIELD and "vec" in plan.columns
    plan = output_plan(SCHEMA, ["age", "color", "size"], include=["id"])
    assert plan.columns == ["id", "age", META_FIELD] and plan.names == ["id", "age", "color", "size"]
    assert output_plan(SCHEMA, ["count(*)"], allow_count=True).columns == ["count(*)"]
    static = validate_schema(CollectionSchema(fields=SCHEMA.fields[:2]))
    with pytest.raises(InvalidArgument, match="field nope not exist"):
        output_plan(static, ["nope"])


def test_template_values() -> None:
    tv = {"a": schema_pb2.TemplateValue(int64_val=3), "b": schema_pb2.TemplateValue(string_val="x")}
    arr = schema_pb2.TemplateValue()
    arr.array_val.long_data.data.extend([1, 2])
    tv["c"] = arr
    assert template_values(tv) == {"a": 3, "b": "x", "c": [1, 2]}


def test_rrf_and_weighted_rankers() -> None:
    results = [([1, 2, 3], np.array([0.1, 0.2, 0.3])), ([3, 4], np.array([0.9, 0.8]))]
    ids, scores, origin = Ranker.parse("rrf", {"k": 60}, 2).fuse(results, ["L2", "IP"], limit=2, offset=0)
    assert ids == [3, 1] and scores[0] == pytest.approx(1 / 63 + 1 / 61) and origin == [(0, 2), (0, 0)]
    ids, scores, _ = Ranker.parse("weighted", {"weights": [1.0, 0.0], "norm_score": True}, 2).fuse(
        results, ["COSINE", "IP"], limit=3, offset=1
    )
    assert ids == [2, 1, 4] and scores[0] == pytest.approx((1 + 0.2) / 2)  # COSINE: (1 + d) / 2
    with pytest.raises(InvalidArgument, match="length of weights"):
        Ranker.parse("weighted", {"weights": [1.0]}, 2)


def test_weighted_scores_follow_milvus_per_metric_and_direction() -> None:
    """Milvus 2.6: BM25 normalises as 2 atan(d) / pi; without norm_score a mix of similarity and
    distance metrics turns distances into 1 - 2 atan(d) / pi, and all-distance fusions rank ascending."""
    l2 = ([1, 2], np.array([0.5, 2.0]))
    bm = ([2, 3], np.array([4.0, 1.0]))
    normed = Ranker("weighted", weights=(0.5, 0.5), norm_score=True)
    ids, scores, _ = normed.fuse([l2, bm], ["L2", "BM25"], limit=3, offset=0)
    ref = {
        1: 0.5 * (1 - 2 * math.atan(0.5) / math.pi),
        2: 0.5 * (1 - 2 * math.atan(2.0) / math.pi) + 0.5 * 2 * math.atan(4.0) / math.pi,
        3: 0.5 * 2 * math.atan(1.0) / math.pi,
    }
    assert ids == sorted(ref, key=lambda k: -ref[k]) and scores == pytest.approx([ref[k] for k in ids])
    raw = Ranker("weighted", weights=(0.5, 0.5), norm_score=False)
    ids, scores, _ = raw.fuse([l2, bm], ["L2", "BM25"], limit=3, offset=0)
    ref = {
        1: 0.5 * (1 - 2 * math.atan(0.5) / math.pi),
        2: 0.5 * (1 - 2 * math.atan(2.0) / math.pi) + 2.0,
        3: 0.5,
    }
    assert ids == [2, 3, 1] and scores == pytest.approx([ref[k] for k in ids])  # mixed: larger is better
    ids, scores, _ = raw.fuse([l2, ([3, 1], np.array([0.1, 3.0]))], ["L2", "L2"], limit=3, offset=0)
    assert ids == [3, 2, 1] and scores == pytest.approx([0.05, 1.0, 1.75])  # all distances: ascending
    ids, _, _ = raw.fuse([([1, 2], np.array([0.9, 0.1])), bm], ["IP", "BM25"], limit=3, offset=0)
    assert ids == [2, 3, 1]  # all similarities: raw, descending


def test_rerank_functions_rrf_and_weighted() -> None:
    """Function(type=RERANK) params arrive as strings; rrf and weighted map onto the same rankers."""
    assert Ranker.from_function({"reranker": "rrf", "k": "10"}, [], 2) == Ranker("rrf", k=10.0)
    assert Ranker.from_function({"reranker": "RRF"}, [], 3) == Ranker("rrf", k=60.0)
    weighted = Ranker.from_function({"reranker": "weighted", "weights": "[0.3, 0.7]"}, [], 2)
    assert weighted == Ranker("weighted", weights=(0.3, 0.7), norm_score=False)  # Milvus: off by default
    normed = Ranker.from_function({"reranker": "weighted", "weights": "[1, 0]", "norm_score": "True"}, [], 2)
    assert normed.norm_score is True
    results = [([1, 2], np.array([0.9, 0.1])), ([2], np.array([3.0]))]
    ids, scores, _ = weighted.fuse(results, ["COSINE", "BM25"], limit=2, offset=0)
    assert ids == [2, 1] and scores[0] == pytest.approx(0.3 * 0.1 + 0.7 * 3.0)


@pytest.mark.parametrize(
    ("params", "inputs", "message"),
    [
        ({"reranker": "decay", "function": "gauss"}, [], "reranker='decay' is not supported"),
        ({"reranker": "model", "provider": "tei"}, [], "reranker='model' is not supported"),
        ({}, [], "reranker=None is not supported"),
        ({"reranker": "rrf"}, ["ts"], "reads no input fields"),
        ({"reranker": "rrf", "k": "0"}, [], "should be in range"),
        ({"reranker": "rrf", "kk": "3"}, [], "unknown params"),
        ({"reranker": "weighted", "weights": "[0.5]"}, [], "length of weights"),
        ({"reranker": "weighted", "weights": "[2.0, 0.5]"}, [], "range \\[0, 1\\]"),
        ({"reranker": "weighted", "weights": "[0.5, 0.5]", "norm_score": "maybe"}, [], "should be a bool"),
        ({"reranker": "weighted", "weights": "[0.5, 0.5"}, [], "not a number/list"),
    ],
)
def test_rerank_functions_refused(params: dict, inputs: list, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Ranker.from_function(params, inputs, 2)


@pytest.mark.parametrize(
    ("exc", "code", "legacy", "text"),
    [
        (CollectionNotFound("c"), 100, common_pb2.CollectionNotExists, "collection not found[collection=c]"),
        (ValidationError("bad row"), 1100, common_pb2.IllegalArgument, "bad row"),
        (FilterError("a >", "unexpected end"), 1100, common_pb2.IllegalArgument, "invalid filter 'a >'"),
        (
            FilterError("a >", "unexpected end"),
            1100,
            common_pb2.IllegalArgument,
            "failed to create query plan: cannot parse expression: a >, error: ",
        ),
        (CollectionNotLoaded("c"), 101, common_pb2.UnexpectedError, "collection not loaded[collection=c]"),
        (
            PartitionNotFound("c", "p"),
            200,
            common_pb2.UnexpectedError,
            "partition not found[partition=p] in collection c: partition name p not found",
        ),
        (PartitionNotLoaded("c", "p"), 201, common_pb2.UnexpectedError, "partition not loaded[partition=p]"),
        (CapacityExceeded("general capacity exceeded: x"), 250, common_pb2.UnexpectedError, "capacity"),
        (IndexNotFound("c", "vec"), 700, common_pb2.IndexNotExist, "index not found"),
        (RequestTooLarge("request size 9 MB"), 1102, common_pb2.UnexpectedError, "request size"),
        (FieldNameInvalid("Invalid field name: like."), 1701, common_pb2.UnexpectedError, "Invalid field"),
        (IndexSpecError("index type X is not supported"), 1100, common_pb2.IllegalArgument, "index type X"),
        (RuntimeError("boom"), 65535, common_pb2.UnexpectedError, "RuntimeError: boom"),
    ],
)
def test_status_for_maps_each_error_family(exc: Exception, code: int, legacy: int, text: str) -> None:
    status = status_for(exc, method="Test")
    assert status.code == code and status.error_code == legacy and text in status.reason


def test_json_default_value_round_trips() -> None:
    schema = validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", DataType.INT64, is_primary=True),
                FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
                FieldSchema("n", DataType.DOUBLE, default_value=2.5),
            )
        )
    )
    pb = schema_to_proto(CollectionInfo("c", 1, schema))
    assert pb.fields[2].default_value.double_data == 2.5
    assert json.loads(json.dumps(schema_from_proto(pb).fields[2].default_value)) == 2.5


EVERY_KIND = validate_schema(
    CollectionSchema(
        fields=(
            *SCHEMA.fields,
            FieldSchema("score", DataType.DOUBLE),
            FieldSchema("ratio", DataType.FLOAT),
            FieldSchema("flag", DataType.BOOL),
            FieldSchema("words", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=8),
        ),
        enable_dynamic_field=True,
    )
)


@pytest.mark.parametrize("name", [f.name for f in EVERY_KIND.fields] + [META_FIELD])
def test_empty_column_still_names_its_kind(name: str) -> None:
    """A query that matches nothing returns zero-row FieldData that pymilvus can size (issue 10:
    pymilvus's orm hello_milvus raised "Unknown data type" on the query after its delete)."""
    from pymilvus.client.utils import len_of

    from gateway.field_data import empty_column

    field = EVERY_KIND.field(name) if name != META_FIELD else None
    fd = field_data_from_column(name, empty_column(field), field)
    assert fd.WhichOneof("field") is not None
    if fd.WhichOneof("field") == "scalars":
        assert fd.scalars.WhichOneof("data") is not None
    else:
        assert fd.vectors.WhichOneof("data") is not None
    assert len_of(fd) == 0
