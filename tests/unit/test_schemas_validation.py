"""Batch validation: ``rows_to_columns`` + ``build_batch`` name the field and row of every error."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from schemas.collection import META_FIELD, CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import InvalidArgument, ValidationError
from schemas.types import DataType as D
from schemas.validation import build_batch, check_unique_keys, rows_to_columns

V = [0.5, -1.0, 2.0, 0.0]

SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=4),
            FieldSchema("n", D.INT32),
            FieldSchema("x", D.DOUBLE, nullable=True),
            FieldSchema("flag", D.BOOL, nullable=True),
            FieldSchema("name", D.VARCHAR, max_length=5, nullable=True),
            FieldSchema("tags", D.ARRAY, element_type=D.INT64, max_capacity=3, nullable=True),
            FieldSchema("doc", D.JSON, nullable=True),
            FieldSchema("level", D.INT16, default_value=7),
        )
    )
)
DYNAMIC = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.VARCHAR, is_primary=True, max_length=8),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=4),
        ),
        enable_dynamic_field=True,
    )
)
AUTO = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True, auto_id=True),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=4),
        )
    )
)


def row(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "vec": V, "n": i, **kw}


def build(rows: list[dict[str, Any]], schema: CollectionSchema = SCHEMA, **kw: Any) -> pa.RecordBatch:
    return build_batch(schema, rows_to_columns(schema, rows), **kw)


def fails(
    rows: list[dict[str, Any]],
    field: str | None,
    row_: int | None,
    *needles: str,
    schema: CollectionSchema = SCHEMA,
    **kw: Any,
) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        build(rows, schema, **kw)
    err = info.value
    assert (err.field, err.row) == (field, row_), str(err)
    msg = str(err)
    if field is not None:
        assert repr(field) in msg or f"field {field} " in msg, msg
    if row_ is not None:
        assert f"row {row_}" in msg or re.search(rf"rows \[[^\]]*\b{row_}\b", msg), msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert isinstance(err, InvalidArgument) and err.code == 1100
    assert err.context["field"] == field and err.context["row"] == row_
    return err


# ---------------------------------------------------------------------------- good batches


def test_good_batch_fills_nullables_and_defaults() -> None:
    b = build([row(1), row(2, x=1.5, flag=True, name="héé", tags=[1, 2, 3], doc={"a": [1, 2]}, level=3)])
    assert b.schema == SCHEMA.data_arrow_schema()
    assert b.num_rows == 2
    got = b.to_pylist()
    assert (
        got[0]["x"] is None and got[0]["flag"] is None and got[0]["name"] is None and got[0]["tags"] is None
    )
    assert got[0]["doc"] is None
    assert got[0]["level"] == 7  # default value fills a missing column...
    assert got[1]["level"] == 3
    assert got[1]["name"] == "héé" and got[1]["tags"] == [1, 2, 3] and got[1]["flag"] is True
    assert orjson.loads(got[1]["doc"]) == {"a": [1, 2]}
    assert got[1]["vec"] == pytest.approx(V)


def test_default_fills_explicit_nulls_too() -> None:
    b = build([row(1, level=None), row(2, level=2)])
    assert b.column("level").to_pylist() == [7, 2]


def test_ints_are_accepted_for_float_fields() -> None:
    b = build([row(1, x=3), row(2, x=2.5)])
    assert b.column("x").to_pylist() == [3.0, 2.5]


def test_json_text_is_kept_as_given_when_valid() -> None:
    b = build([row(1, doc='{"k": 1}'), row(2, doc=b"[1,2]"), row(3, doc=5), row(4, doc="null")])
    assert b.column("doc").to_pylist() == ['{"k": 1}', "[1,2]", "5", "null"]


def test_numpy_and_arrow_columns() -> None:
    cols = {
        "id": np.arange(3, dtype=np.int64),
        "vec": np.ones((3, 4), dtype=np.float64),
        "n": pa.array([1, 2, 3], type=pa.int64()),  # castable Arrow column
    }
    b = build_batch(SCHEMA, cols)
    assert b.column("n").type == pa.int32() and b.column("n").to_pylist() == [1, 2, 3]
    assert b.column("vec").type == pa.list_(pa.float32(), 4)


def test_insert_allows_duplicate_keys() -> None:
    assert build([row(1), row(1, n=9)], op="insert").column("id").to_pylist() == [1, 1]


# ---------------------------------------------------------------------------- refusals


def test_wrong_dimension() -> None:
    fails([row(0), row(1, vec=[1.0, 2.0, 3.0])], "vec", 1, "dim 3", "expected dim 4")


def test_wrong_dimension_numpy_matrix() -> None:
    with pytest.raises(ValidationError, match="'vec'.*dim 4.*dim 3") as info:
        build_batch(SCHEMA, {"id": [1], "vec": np.zeros((1, 3)), "n": [1]})
    assert info.value.field == "vec"


def test_non_numeric_and_non_finite_vectors() -> None:
    fails([row(0), row(1, vec=["a", "b", "c", "d"])], "vec", 1, "not a list of numbers")
    fails([row(0), row(1, vec=[1.0, float("nan"), 0.0, 0.0])], "vec", 1, "NaN")
    fails([row(0), row(1, vec=None)], "vec", 1, "null")


@pytest.mark.parametrize(
    "field, value",
    [
        ("n", "7"),  # string for int
        ("n", 1.5),  # float for int
        ("n", 2.0),  # a float for an int, even a whole one
        ("n", True),  # bool for int
        ("n", 2**40),  # out of the INT32 range
        ("x", False),  # bool for double
        ("x", "1.0"),  # string for double
        ("flag", 1),  # non-bool for BOOL
        ("flag", "true"),
        ("name", 12),  # int for VARCHAR
        ("tags", "1,2"),  # not a list
    ],
)
def test_wrong_type_names_field_and_row(field: str, value: Any) -> None:
    fails([row(0), row(1), row(2, **{field: value})], field, 2, "expects")


def test_missing_field_in_one_row() -> None:
    rows = [row(0), {"id": 1, "vec": V}]
    fails(rows, "n", 1, "not nullable")


def test_missing_field_in_every_row() -> None:
    fails([{"id": 1, "vec": V}], "n", None, "missing field")


def test_missing_vector_field() -> None:
    fails([{"id": 1, "n": 1}], "vec", None, "missing field")


def test_missing_primary_key() -> None:
    fails([{"vec": V, "n": 1}], "id", None, "missing primary key")


def test_null_primary_key() -> None:
    fails([row(0), row(1), {"id": None, "vec": V, "n": 2}], "id", 2, "null")


def test_varchar_over_max_length_names_the_row() -> None:
    fails([row(0, name="abcde"), row(1, name="abcdef")], "name", 1, "max_length 5", "6 bytes")


def test_varchar_length_is_in_bytes() -> None:
    fails([row(0, name="ééé")], "name", 0, "max_length")


def test_array_over_max_capacity() -> None:
    fails([row(0, tags=[1]), row(1, tags=[1, 2, 3, 4])], "tags", 1, "max_capacity 3", "4 elements")


def test_array_element_of_the_wrong_type() -> None:
    fails([row(0, tags=[1]), row(1, tags=["a"])], "tags", 1, "ARRAY of INT64")


def test_array_float_element_for_int_array() -> None:
    fails([row(0, tags=[1]), row(1, tags=[2, 1.5])], "tags", 1)


def test_array_bool_element_for_int_array() -> None:
    fails([row(0, tags=[1]), row(1, tags=[2, True])], "tags", 1, "ARRAY of INT64")


def test_bad_json_text() -> None:
    fails([row(0, doc="{}"), row(1, doc="{bad json")], "doc", 1, "not valid JSON")


def test_json_not_serialisable() -> None:
    fails([row(0, doc={"a": object()})], "doc", 0, "not valid JSON")


def test_unknown_field_without_dynamic_field() -> None:
    fails(
        [row(0), row(1, colour="red")],
        "colour",
        1,
        "not in the collection schema",
        "dynamic fields are disabled",
    )


def test_unknown_column_in_columns_mapping() -> None:
    with pytest.raises(ValidationError) as info:
        build_batch(SCHEMA, {"id": [1], "vec": [V], "n": [1], "ghost": [1]})
    assert info.value.field == "ghost" and "'ghost'" in str(info.value)


def test_dynamic_fields_go_to_meta() -> None:
    b = build([{"id": "a", "vec": V, "colour": "red", "k": [1, {"z": None}]}, {"id": "b", "vec": V}], DYNAMIC)
    assert b.schema.names == ["id", "vec", META_FIELD]
    metas = b.column(META_FIELD).to_pylist()
    assert orjson.loads(metas[0]) == {"colour": "red", "k": [1, {"z": None}]}
    assert orjson.loads(metas[1]) == {}


def test_dynamic_schema_without_extra_keys_has_null_meta() -> None:
    b = build([{"id": "a", "vec": V}], DYNAMIC)
    assert b.column(META_FIELD).to_pylist() == [None]


def test_rows_must_be_objects() -> None:
    with pytest.raises(ValidationError) as info:
        rows_to_columns(SCHEMA, [row(0), ["not", "a", "dict"]])
    assert info.value.row == 1 and "row 1" in str(info.value)
    with pytest.raises(ValidationError):
        rows_to_columns(SCHEMA, "nope")  # type: ignore[arg-type]


def test_empty_batch_and_ragged_columns_and_row_limit() -> None:
    with pytest.raises(ValidationError, match="no rows"):
        build_batch(SCHEMA, {})
    with pytest.raises(ValidationError, match="different numbers of rows"):
        build_batch(SCHEMA, {"id": [1, 2], "vec": [V], "n": [1, 2]})
    with pytest.raises(ValidationError, match="more than the limit of 1"):
        build([row(0), row(1)], max_batch_rows=1)


# ---------------------------------------------------------------------------- auto_id


def test_auto_id_fills_the_key_on_insert() -> None:
    b = build([{"vec": V}, {"vec": V}], AUTO, auto_ids=np.array([10, 11]))
    assert b.column("id").to_pylist() == [10, 11]


def test_auto_id_refuses_a_given_key_on_insert() -> None:
    fails([{"id": 1, "vec": V}], "id", None, "auto_id", "do not provide", schema=AUTO, auto_ids=np.array([5]))


def test_auto_id_needs_allocated_ids() -> None:
    fails([{"vec": V}], "id", None, "no ids were allocated", schema=AUTO)


def test_auto_id_upsert_takes_the_given_key() -> None:
    b = build([{"id": 3, "vec": V}], AUTO, op="upsert")
    assert b.column("id").to_pylist() == [3]


# ---------------------------------------------------------------------------- upsert duplicates


def test_duplicate_key_in_one_upsert_batch() -> None:
    err = fails([row(5), row(6), row(5, n=1)], "id", 2, "duplicate primary key 5", op="upsert")
    assert "[0, 2]" in str(err)


def test_duplicate_string_key_in_upsert() -> None:
    fails(
        [{"id": "k1", "vec": V}, {"id": "k1", "vec": V}],
        "id",
        1,
        "duplicate primary key 'k1'",
        schema=DYNAMIC,
        op="upsert",
    )


def test_check_unique_keys_accepts_unique() -> None:
    check_unique_keys(pa.array([1, 2, 3]), "id")


# ---------------------------------------------------------------------------- other vector kinds

VECS = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("h", D.FLOAT16_VECTOR, dim=2),
            FieldSchema("bf", D.BFLOAT16_VECTOR, dim=2),
            FieldSchema("bits", D.BINARY_VECTOR, dim=16),
        )
    )
)


def test_half_and_binary_vectors_from_numpy() -> None:
    f = np.array([[1.0, -2.0], [0.5, 0.0]], dtype=np.float32)
    b = build_batch(
        VECS, {"id": [1, 2], "h": f, "bf": f, "bits": np.array([[1, 2], [255, 0]], dtype=np.uint8)}
    )
    assert b.column("h").type == pa.binary(4) and b.column("bits").type == pa.binary(2)
    h = np.frombuffer(b"".join(b.column("h").to_pylist()), dtype=np.float16).reshape(2, 2)
    assert np.array_equal(h, f.astype(np.float16))
    bf = np.frombuffer(b"".join(b.column("bf").to_pylist()), dtype=np.uint16).reshape(2, 2)
    back = (bf.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(back, f)  # these values are exact in bfloat16
    assert b.column("bits").to_pylist() == [b"\x01\x02", b"\xff\x00"]


def test_half_and_binary_vectors_from_bytes() -> None:
    b = build_batch(VECS, {"id": [1], "h": [b"\x00" * 4], "bf": [bytes(4)], "bits": [b"\x0f\xf0"]})
    assert b.num_rows == 1


@pytest.mark.parametrize(
    "col, value, needle",
    [
        ("h", [b"\x00" * 3], "4-byte"),
        ("bf", ["text"], "4-byte"),
        ("bits", [b"\x00"], "2-byte"),
        ("bits", np.zeros((1, 3), dtype=np.uint8), "2 bytes"),
    ],
)
def test_half_and_binary_vectors_of_the_wrong_size(col: str, value: Any, needle: str) -> None:
    cols = {"id": [1], "h": [bytes(4)], "bf": [bytes(4)], "bits": [bytes(2)], col: value}
    with pytest.raises(ValidationError) as info:
        build_batch(VECS, cols)
    assert info.value.field == col and needle in str(info.value) and repr(col) in str(info.value)


# ---------------------------------------------------------------------------- nothing is written


def test_a_failing_batch_reaches_no_sink() -> None:
    """The write path is validate -> encode -> append: a refused batch never reaches the sink."""
    from schemas.catalog import CollectionInfo
    from walvus.wal_writer import shard_messages

    sink: list[Any] = []
    info = CollectionInfo("c", 1, SCHEMA, shards_num=2)

    def write(rows: list[dict[str, Any]]) -> None:
        batch = build(rows)
        sink.extend(shard_messages("ns", info, "insert", batch, ts=1, origin="", partition=None))  # type: ignore[arg-type]

    with pytest.raises(ValidationError):
        write([row(i) for i in range(50)] + [row(50, vec=[1.0])])
    assert sink == []
    write([row(i) for i in range(50)])
    assert sink  # the same path with a good batch does write


def test_int8_vectors_are_one_byte_per_dimension_and_range_checked() -> None:
    import numpy as np
    import pyarrow as pa

    from schemas.collection import CollectionSchema, FieldSchema
    from schemas.exceptions import ValidationError
    from schemas.types import DataType
    from schemas.validation import build_batch

    schema = CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("v", DataType.INT8_VECTOR, dim=3),
            FieldSchema("w", DataType.FLOAT_VECTOR, dim=2, nullable=True),
        )
    )
    x = np.array([[-128, 0, 127], [1, 2, 3]], dtype=np.int8)
    batch = build_batch(schema, {"id": [1, 2], "v": x, "w": [[0.5, 1.5], None]})
    v = batch.column("v")
    assert v.type == pa.binary(3)
    assert np.frombuffer(b"".join(v.to_pylist()), dtype=np.int8).reshape(2, 3).tolist() == x.tolist()
    assert batch.column("w").to_pylist() == [[0.5, 1.5], None]
    as_lists = build_batch(schema, {"id": [1, 2], "v": x.tolist(), "w": None})
    assert as_lists.column("v").equals(v) and as_lists.column("w").null_count == 2
    for bad in ([[128, 0, 0], [0, 0, 0]], [[0.5, 0, 0], [0, 0, 0]]):
        with pytest.raises(ValidationError, match=r"\[-128, 127\]"):
            build_batch(schema, {"id": [1, 2], "v": bad})
