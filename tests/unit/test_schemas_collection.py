"""Collection schemas: ``validate_schema`` refusals, ``with_field``, and CollectionInfo JSON round trips."""

from __future__ import annotations

import pytest

from schemas.catalog import DEFAULT_PARTITION, CatalogEvent, CollectionInfo, IndexInfo
from schemas.collection import (
    DEFAULT_MAX_DIM,
    SYSTEM_COLUMNS,
    CollectionSchema,
    FieldSchema,
    validate_schema,
)
from schemas.exceptions import InvalidArgument, SchemaError
from schemas.types import DataType as D

PK = FieldSchema("id", D.INT64, is_primary=True)
VEC = FieldSchema("vec", D.FLOAT_VECTOR, dim=8)


def schema_of(*fields: FieldSchema, **kw) -> CollectionSchema:
    return CollectionSchema(fields=tuple(fields), **kw)


def refused(schema: CollectionSchema, *needles: str, field: str | None = None) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate_schema(schema)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    if field is not None:
        assert info.value.context.get("field") == field
    return info.value


# ---------------------------------------------------------------------------- good schemas


def test_valid_schema_numbers_fields_and_keeps_everything_else() -> None:
    raw = schema_of(
        PK,
        VEC,
        FieldSchema("title", D.VARCHAR, max_length=64),
        FieldSchema("tags", D.ARRAY, element_type=D.VARCHAR, max_capacity=4, max_length=8),
        enable_dynamic_field=True,
        description="d",
    )
    out = validate_schema(raw)
    assert [f.field_id for f in out.fields] == [100, 101, 102, 103]
    assert out.primary.name == "id"
    assert [f.name for f in out.vector_fields] == ["vec"]
    assert out.enable_dynamic_field and out.description == "d"
    assert out.field("title") is not None and out.field("nope") is None
    assert out.data_arrow_schema().names == ["id", "vec", "title", "tags", "$meta"]
    assert out.stored_arrow_schema().names[-len(SYSTEM_COLUMNS) :] == list(SYSTEM_COLUMNS)


@pytest.mark.parametrize(
    "vec",
    [
        FieldSchema("v", D.FLOAT_VECTOR, dim=1),
        FieldSchema("v", D.FLOAT_VECTOR, dim=DEFAULT_MAX_DIM),
        FieldSchema("v", D.BINARY_VECTOR, dim=8),
        FieldSchema("v", D.FLOAT16_VECTOR, dim=3),
        FieldSchema("v", D.BFLOAT16_VECTOR, dim=5),
    ],
)
def test_vector_dims_at_the_limits_are_accepted(vec: FieldSchema) -> None:
    validate_schema(schema_of(PK, vec))


def test_varchar_primary_key_is_accepted() -> None:
    out = validate_schema(schema_of(FieldSchema("k", D.VARCHAR, is_primary=True, max_length=10), VEC))
    assert out.primary.name == "k"


# ---------------------------------------------------------------------------- primary key


def test_no_primary_key() -> None:
    refused(schema_of(FieldSchema("id", D.INT64), VEC), "exactly one primary key", "got 0")


def test_two_primary_keys_names_both() -> None:
    refused(
        schema_of(PK, FieldSchema("id2", D.INT64, is_primary=True), VEC),
        "exactly one primary key",
        "got 2",
        "'id'",
        "'id2'",
    )


@pytest.mark.parametrize("dtype", [D.INT32, D.FLOAT, D.BOOL, D.DOUBLE])
def test_bad_primary_key_type(dtype: D) -> None:
    refused(
        schema_of(FieldSchema("key", dtype, is_primary=True), VEC), "'key'", "INT64 or VARCHAR", dtype.name
    )


def test_nullable_primary_key() -> None:
    refused(
        schema_of(FieldSchema("key", D.INT64, is_primary=True, nullable=True), VEC),
        "'key'",
        "primary field not support null",
    )


def test_auto_id_only_on_primary_key() -> None:
    refused(schema_of(PK, VEC, FieldSchema("n", D.INT64, auto_id=True)), "'n'", "auto_id", field="n")


# ---------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("dim", [0, -1, DEFAULT_MAX_DIM + 1, None])
def test_vector_dim_out_of_range(dim: int | None) -> None:
    refused(schema_of(PK, FieldSchema("emb", D.FLOAT_VECTOR, dim=dim)), "'emb'", "dim", str(dim), field="emb")


def test_vector_dim_limit_is_configurable() -> None:
    s = schema_of(PK, FieldSchema("emb", D.FLOAT_VECTOR, dim=129))
    with pytest.raises(SchemaError, match="'emb'.*between 1 and 128"):
        validate_schema(s, max_dim=128)


@pytest.mark.parametrize("dim", [4, 12, 31])
def test_binary_vector_dim_must_be_a_multiple_of_8(dim: int) -> None:
    refused(
        schema_of(PK, FieldSchema("bits", D.BINARY_VECTOR, dim=dim)), "'bits'", "multiple of 8", field="bits"
    )


def test_nullable_vector() -> None:
    # vectors may be nullable, dense and sparse (rows without one are never search results)
    validate_schema(schema_of(PK, FieldSchema("emb", D.FLOAT_VECTOR, dim=4, nullable=True)))
    validate_schema(
        schema_of(
            PK,
            FieldSchema("emb", D.FLOAT_VECTOR, dim=4),
            FieldSchema("s", D.SPARSE_FLOAT_VECTOR, nullable=True),
        )
    )
    refused(
        schema_of(
            PK,
            FieldSchema("emb", D.FLOAT_VECTOR, dim=4),
            FieldSchema("s", D.SPARSE_FLOAT_VECTOR, is_partition_key=True),
        ),
        "'s'",
        "partition key",
    )


def test_no_vector_field() -> None:
    refused(schema_of(PK, FieldSchema("n", D.INT32)), "schema does not contain vector field")


@pytest.mark.parametrize("dtype", [D.STRING, D.NONE])
def test_unsupported_types(dtype: D) -> None:
    refused(
        schema_of(PK, VEC, FieldSchema("odd", dtype, dim=4)),
        "'odd'",
        dtype.name,
        "not supported",
        field="odd",
    )


# ---------------------------------------------------------------------------- scalars


@pytest.mark.parametrize("max_length", [None, 0, 65_536])
def test_varchar_needs_max_length(max_length: int | None) -> None:
    refused(
        schema_of(PK, VEC, FieldSchema("title", D.VARCHAR, max_length=max_length)),
        "'title'",
        "max_length",
        field="title",
    )


@pytest.mark.parametrize(
    "arr, needle",
    [
        (FieldSchema("tags", D.ARRAY, max_capacity=4), "element_type"),
        (FieldSchema("tags", D.ARRAY, element_type=D.JSON, max_capacity=4), "element_type"),
        (FieldSchema("tags", D.ARRAY, element_type=D.FLOAT_VECTOR, max_capacity=4), "element_type"),
        (FieldSchema("tags", D.ARRAY, element_type=D.INT64), "max_capacity"),
        (FieldSchema("tags", D.ARRAY, element_type=D.INT64, max_capacity=0), "max_capacity"),
        (FieldSchema("tags", D.ARRAY, element_type=D.INT64, max_capacity=4097), "max_capacity"),
        (FieldSchema("tags", D.ARRAY, element_type=D.VARCHAR, max_capacity=4), "max_length"),
    ],
)
def test_array_needs_element_type_and_capacity(arr: FieldSchema, needle: str) -> None:
    refused(schema_of(PK, VEC, arr), "'tags'", needle, field="tags")


def test_partition_key_rules() -> None:
    refused(schema_of(PK, VEC, FieldSchema("pk2", D.FLOAT, is_partition_key=True)), "'pk2'", "partition key")
    refused(
        schema_of(
            PK,
            VEC,
            FieldSchema("a", D.INT64, is_partition_key=True),
            FieldSchema("b", D.INT64, is_partition_key=True),
        ),
        "only one partition key",
    )
    refused(
        schema_of(FieldSchema("id", D.INT64, is_primary=True, is_partition_key=True), VEC), "partition key"
    )


# ---------------------------------------------------------------------------- names


def test_duplicate_field_names() -> None:
    refused(schema_of(PK, VEC, FieldSchema("vec", D.INT32)), "duplicated", "'vec'", field="vec")


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "has space", "$meta", "é", "x" * 256, "a.b"])
def test_bad_field_names(name: str) -> None:
    err = refused(schema_of(PK, VEC, FieldSchema(name, D.INT32)), f"Invalid field name: {name}. ")
    assert isinstance(err, InvalidArgument) and isinstance(err, ValueError) and err.code == 1701


@pytest.mark.parametrize("name", ["_partition", "_shard", "_offset", "_seq", "_ts", "_segment"])
def test_system_column_names_are_reserved(name: str) -> None:
    err = refused(schema_of(PK, VEC, FieldSchema(name, D.INT64)), f"Invalid field name: {name}.", "reserved")
    assert err.code == 1701


@pytest.mark.parametrize("name", ["like", "AND", "Or", "not", "in", "is", "null", "exists", "TRUE", "false"])
def test_filter_keywords_are_not_field_names(name: str) -> None:
    refused(schema_of(PK, VEC, FieldSchema(name, D.INT64)), f"{name} is keyword", field=name)


@pytest.mark.parametrize("name", ["_x", "A", "a1_B", "x" * 255])
def test_good_field_names(name: str) -> None:
    validate_schema(schema_of(PK, VEC, FieldSchema(name, D.INT32)))


def test_empty_schema() -> None:
    refused(schema_of(), "no fields")


# ---------------------------------------------------------------------------- add field


def test_with_field_bumps_version_and_numbers_the_field() -> None:
    s = validate_schema(schema_of(PK, VEC))
    assert s.version == 1
    s2 = s.with_field(FieldSchema("extra", D.INT32, nullable=True))
    assert s2.version == 2
    assert s2.field("extra") is not None and s2.field("extra").field_id == 102
    assert s.field("extra") is None and len(s.fields) == 2  # the old version is untouched
    s3 = s2.with_field(FieldSchema("dflt", D.VARCHAR, max_length=4, default_value="x"))
    assert s3.version == 3 and s3.field("dflt").field_id == 103
    assert CollectionSchema.from_dict(s3.to_dict()) == s3


def test_with_field_refusals() -> None:
    s = validate_schema(schema_of(PK, VEC))
    with pytest.raises(SchemaError, match="'vec'.*already exists"):
        s.with_field(FieldSchema("vec", D.INT32, nullable=True))
    with pytest.raises(SchemaError, match="'extra'.*nullable or have a default"):
        s.with_field(FieldSchema("extra", D.INT32))
    # the checks a created schema gets (pymilvus's nullable_vector example adds a sparse field)
    with pytest.raises(SchemaError, match="added field .sparse. must be nullable"):
        s.with_field(FieldSchema("sparse", D.SPARSE_FLOAT_VECTOR))
    assert s.with_field(FieldSchema("sparse", D.SPARSE_FLOAT_VECTOR, nullable=True)).field("sparse").nullable
    with pytest.raises(SchemaError, match="VARCHAR needs max_length"):
        s.with_field(FieldSchema("note", D.VARCHAR, nullable=True))
    with pytest.raises(SchemaError, match="(?i)invalid field name"):
        s.with_field(FieldSchema("no-dash", D.INT32, nullable=True))
    with pytest.raises(SchemaError, match="primary key or the partition key"):
        s.with_field(FieldSchema("pk2", D.INT64, is_partition_key=True, nullable=True))


# ---------------------------------------------------------------------------- JSON round trips


def full_schema() -> CollectionSchema:
    return validate_schema(
        schema_of(
            FieldSchema("id", D.VARCHAR, is_primary=True, max_length=36, description="key"),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=16),
            FieldSchema("bits", D.BINARY_VECTOR, dim=64),
            FieldSchema("n", D.INT64, nullable=True, default_value=5),
            FieldSchema("tags", D.ARRAY, element_type=D.VARCHAR, max_capacity=8, max_length=12),
            FieldSchema("doc", D.JSON, nullable=True),
            FieldSchema("tenant", D.INT64, is_partition_key=True),
            enable_dynamic_field=True,
            description="everything",
        )
    )


def test_collection_schema_dict_roundtrip() -> None:
    s = full_schema()
    back = CollectionSchema.from_dict(s.to_dict())
    assert back == s
    assert back.field("tags").element_type == D.VARCHAR
    assert back.partition_key.name == "tenant"
    assert back.data_arrow_schema() == s.data_arrow_schema()


def test_collection_info_json_roundtrip_with_indexes_and_partitions() -> None:
    info = CollectionInfo(
        name="docs",
        collection_id=42,
        schema=full_schema(),
        shards_num=4,
        partitions={DEFAULT_PARTITION: 0, "p1": 7, "p2": 9},
        indexes={
            "vec": IndexInfo("vec", "vec_idx", "HNSW", "COSINE", {"M": 16, "efConstruction": 200}, 3, 1234),
            "bits": IndexInfo("bits", "b_idx", "BIN_FLAT", "HAMMING"),
        },
        loaded=True,
        loaded_partitions=("p1", "p2"),
        properties={"collection.ttl.seconds": "60"},
        consistency_level=0,
        created_ts=99,
        event=CatalogEvent.CREATE_INDEX,
        origin="site-a",
    )
    raw = info.to_json()
    back = CollectionInfo.from_json(raw)
    assert back == info
    assert back.indexes["vec"].params == {"M": 16, "efConstruction": 200}
    assert isinstance(back.loaded_partitions, tuple)
    assert back.to_json() == raw  # canonical: sorted keys, stable


def test_collection_info_ignores_unknown_keys_and_evolve() -> None:
    import json

    info = CollectionInfo("c", 1, validate_schema(schema_of(PK, VEC)))
    d = json.loads(info.to_json())
    d["some_future_key"] = 1
    back = CollectionInfo.from_json(json.dumps(d).encode())
    assert back == info and back.active
    dropped = info.evolve(CatalogEvent.DROP_COLLECTION, state="dropped", dropped_ts=5)
    assert not dropped.active and dropped.event == CatalogEvent.DROP_COLLECTION
    assert CollectionInfo.from_json(dropped.to_json()) == dropped


def test_collection_info_roundtrip_after_add_field() -> None:
    info = CollectionInfo("c", 1, validate_schema(schema_of(PK, VEC)))
    grown = info.evolve(
        CatalogEvent.ADD_FIELD, schema=info.schema.with_field(FieldSchema("x", D.BOOL, nullable=True))
    )
    back = CollectionInfo.from_json(grown.to_json())
    assert back.schema.version == 2 and back.schema.field("x").field_id == 102
    assert back == grown


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        (
            FieldSchema("id", D.INT64, is_primary=True, default_value=1),
            "primary field not support default_value",
        ),
        (FieldSchema("v2", D.FLOAT_VECTOR, dim=2, default_value=[0.0, 0.0]), "not support default_value"),
        (
            FieldSchema("a", D.ARRAY, element_type=D.INT64, max_capacity=2, default_value=[1]),
            "not support default_value",
        ),
        (FieldSchema("n", D.INT32, default_value=True), "is not equal to the type(DataType_Bool)"),
        (FieldSchema("n", D.INT64, default_value=1.5), "is not equal to the type(DataType_Double)"),
        (FieldSchema("f", D.FLOAT, default_value="1"), "is not equal to the type(DataType_VarChar)"),
        (FieldSchema("b", D.BOOL, default_value=1), "is not equal to the type(DataType_Int64)"),
        (FieldSchema("n", D.INT16, default_value=-32769), "-32769 out of range -32768 <= value <= 32767"),
        (FieldSchema("s", D.VARCHAR, max_length=3, default_value="abcd"), "the length (4) of string exceeds"),
        (
            FieldSchema("k", D.INT64, is_partition_key=True, nullable=True),
            "partition key field not support nullable",
        ),
    ],
)
def test_default_values_and_nullable_partition_keys_milvus_refuses(field: FieldSchema, needle: str) -> None:
    fields = (FieldSchema("pk", D.INT64, is_primary=True), VEC, field) if field.name != "id" else (field, VEC)
    refused(schema_of(*fields), needle, field=field.name)


def test_default_values_of_the_right_type_are_kept() -> None:
    fields = (
        FieldSchema("n", D.INT8, default_value=-128),
        FieldSchema("d", D.DOUBLE, default_value=2),
        FieldSchema("b", D.BOOL, default_value=False),
        FieldSchema("s", D.VARCHAR, max_length=3, default_value="abc"),
        FieldSchema("j", D.JSON, default_value={"a": 1}),
    )
    schema = validate_schema(schema_of(PK, VEC, *fields))
    assert [f.default_value for f in schema.fields[2:]] == [-128, 2, False, "abc", {"a": 1}]


def test_added_vector_fields_are_nullable_and_dropped_names_stay_taken() -> None:
    from schemas.collection import CollectionSchema, FieldSchema
    from schemas.exceptions import SchemaError
    from schemas.types import DataType

    base = CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True, field_id=100),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=4, field_id=101),
            FieldSchema("n", DataType.INT64, field_id=102),
        )
    )
    with pytest.raises(SchemaError, match="nullable"):
        base.with_field(FieldSchema("w", DataType.FLOAT_VECTOR, dim=4))
    with pytest.raises(SchemaError, match="nullable"):
        base.with_field(FieldSchema("s", DataType.SPARSE_FLOAT_VECTOR))
    added = base.with_field(FieldSchema("w", DataType.INT8_VECTOR, dim=4, nullable=True))
    assert added.field("w").nullable and added.field("w").field_id == 103
    dropped = added.without_field("n")
    assert dropped.field("n") is None and dropped.dropped_fields == (("n", 102),)
    assert CollectionSchema.from_dict(dropped.to_dict()).dropped_fields == (("n", 102),)
    with pytest.raises(SchemaError, match="dropped field"):
        dropped.with_field(FieldSchema("n", DataType.INT64, nullable=True))
    assert (
        dropped.without_field("w")
        .with_field(FieldSchema("m", DataType.INT64, nullable=True))
        .field("m")
        .field_id
        == 104
    )  # ids of dropped fields are not reused
    with pytest.raises(SchemaError, match="primary key"):
        dropped.without_field("id")
    with pytest.raises(SchemaError, match="only vector field"):
        dropped.without_field("w").without_field("v")
