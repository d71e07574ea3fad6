"""Collection schemas between the Milvus protobuf form and walvus's own model.

Milvus sends ``dim``, ``max_length`` and ``max_capacity`` as string ``type_params``,
default values as a ``ValueField`` and the dynamic field as an implied ``$meta`` JSON
column that DescribeCollection does not list. Filter schemas (for the expression
compiler) are derived here too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from pymilvus.grpc_gen import common_pb2, schema_pb2

from schemas.catalog import CollectionInfo
from schemas.collection import META_FIELD, CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument, SchemaError
from schemas.filters import FilterSchema, filter_view
from schemas.functions import FunctionSchema
from schemas.timestamptz import parse_one
from schemas.types import DataType

log = logging.getLogger(__name__)

_INT_PARAMS = ("dim", "max_length", "max_capacity")
_IGNORED_PARAMS = {"mmap.enabled", "mmap_enabled"}
_BOOL_PARAMS = ("enable_analyzer", "enable_match")
_VALUE_ATTR = {
    DataType.BOOL: "bool_data",
    DataType.INT8: "int_data",
    DataType.INT16: "int_data",
    DataType.INT32: "int_data",
    DataType.INT64: "long_data",
    DataType.FLOAT: "float_data",
    DataType.DOUBLE: "double_data",
    DataType.VARCHAR: "string_data",
    DataType.JSON: "string_data",
    DataType.TIMESTAMPTZ: "timestamptz_data",
}


def data_type(code: int, what: str) -> DataType:
    """Milvus's type number as ours; types walvus does not have are a clear error."""
    try:
        return DataType(int(code))
    except ValueError:
        try:
            name = schema_pb2.DataType.Name(int(code))
        except ValueError:
            name = str(code)
        raise SchemaError(f"{what}: data type {name} is not supported by walvus") from None


def field_from_proto(f: schema_pb2.FieldSchema) -> FieldSchema:
    dtype = data_type(f.data_type, f"field {f.name!r}")
    params: dict[str, int] = {}
    text: dict[str, Any] = {}
    for kv in f.type_params:
        if kv.key in _BOOL_PARAMS:
            text[kv.key] = kv.value.strip().lower() == "true"
        elif kv.key in ("analyzer_params", "multi_analyzer_params"):
            text[kv.key] = kv.value
        elif kv.key in _INT_PARAMS:
            try:
                params[kv.key] = int(json.loads(kv.value))
            except (ValueError, TypeError):
                raise SchemaError(
                    f"field {f.name!r}: {kv.key} must be an integer, got {kv.value!r}"
                ) from None
        elif kv.key not in _IGNORED_PARAMS:
            log.warning("ignoring unsupported type param field=%s key=%s", f.name, kv.key)
    element = None
    if dtype == DataType.ARRAY:
        element = data_type(f.element_type, f"array field {f.name!r}")
    default = None
    if f.HasField("default_value") and f.default_value.WhichOneof("data") is not None:
        default = getattr(f.default_value, f.default_value.WhichOneof("data"))
        if dtype == DataType.JSON and isinstance(default, str):
            default = json.loads(default)
        if dtype == DataType.TIMESTAMPTZ and isinstance(default, str):
            try:
                default = parse_one(default)
            except InvalidArgument as exc:
                raise SchemaError(f"field {f.name!r}: default_value {exc}") from None
    return FieldSchema(
        name=f.name,
        dtype=dtype,
        is_primary=f.is_primary_key,
        auto_id=f.autoID,
        dim=params.get("dim"),
        max_length=params.get("max_length"),
        element_type=element,
        max_capacity=params.get("max_capacity"),
        nullable=f.nullable,
        default_value=default,
        is_partition_key=f.is_partition_key,
        description=f.description,
        is_function_output=f.is_function_output,
        **text,
    )


def function_from_proto(fn: schema_pb2.FunctionSchema) -> FunctionSchema:
    try:
        kind = schema_pb2.FunctionType.Name(fn.type)
    except ValueError:
        kind = str(fn.type)
    return FunctionSchema(
        name=fn.name,
        type=kind,
        input_field_names=tuple(fn.input_field_names),
        output_field_names=tuple(fn.output_field_names),
        params={kv.key: kv.value for kv in fn.params},
        description=fn.description,
    )


def function_to_proto(fn: FunctionSchema, schema: CollectionSchema) -> schema_pb2.FunctionSchema:
    def ids(names: tuple[str, ...]) -> list[int]:
        return [f.field_id for n in names if (f := schema.field(n)) is not None]

    return schema_pb2.FunctionSchema(
        name=fn.name,
        description=fn.description,
        type=schema_pb2.FunctionType.Value(fn.type),
        input_field_names=list(fn.input_field_names),
        input_field_ids=ids(fn.input_field_names),
        output_field_names=list(fn.output_field_names),
        output_field_ids=ids(fn.output_field_names),
        params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in fn.params.items()],
    )


def schema_from_proto(pb: schema_pb2.CollectionSchema) -> CollectionSchema:
    """The schema of a CreateCollection request (not yet validated: ``validate_schema`` does that)."""
    fields = []
    for f in pb.fields:
        if f.is_dynamic or f.name == META_FIELD:
            continue
        field = field_from_proto(f)
        if pb.autoID and field.is_primary and not field.auto_id:
            field = replace(field, auto_id=True)
        fields.append(field)
    if len(pb.struct_array_fields):
        raise SchemaError("struct array fields are not supported by walvus")
    return CollectionSchema(
        fields=tuple(fields),
        description=pb.description,
        enable_dynamic_field=pb.enable_dynamic_field,
        functions=tuple(function_from_proto(fn) for fn in pb.functions),
    )


def _value_field(f: FieldSchema) -> schema_pb2.ValueField | None:
    if f.default_value is None:
        return None
    attr = _VALUE_ATTR.get(f.dtype)
    if attr is None:
        return None
    value: Any = f.default_value
    if f.dtype == DataType.JSON and not isinstance(value, str):
        value = json.dumps(value)
    return schema_pb2.ValueField(**{attr: value})


def field_to_proto(f: FieldSchema) -> schema_pb2.FieldSchema:
    pb = schema_pb2.FieldSchema(
        fieldID=f.field_id,
        name=f.name,
        is_primary_key=f.is_primary,
        description=f.description,
        data_type=int(f.dtype),
        autoID=f.auto_id,
        nullable=f.nullable,
        is_partition_key=f.is_partition_key,
        is_function_output=f.is_function_output,
    )
    if f.element_type is not None:
        pb.element_type = int(f.element_type)
    for key in _INT_PARAMS:
        value = getattr(f, key)
        if value is not None:
            pb.type_params.append(common_pb2.KeyValuePair(key=key, value=str(value)))
    for key in _BOOL_PARAMS:
        if getattr(f, key):
            pb.type_params.append(common_pb2.KeyValuePair(key=key, value="true"))
    for key in ("analyzer_params", "multi_analyzer_params"):
        if getattr(f, key):
            pb.type_params.append(common_pb2.KeyValuePair(key=key, value=getattr(f, key)))
    default = _value_field(f)
    if default is not None:
        pb.default_value.CopyFrom(default)
    return pb


def schema_to_proto(info: CollectionInfo) -> schema_pb2.CollectionSchema:
    schema = info.schema
    return schema_pb2.CollectionSchema(
        name=info.name,
        description=schema.description,
        autoID=schema.primary.auto_id,
        fields=[field_to_proto(f) for f in schema.fields],
        enable_dynamic_field=schema.enable_dynamic_field,
        version=schema.version,
        dbName="default",
        functions=[function_to_proto(fn, schema) for fn in schema.functions],
    )


def filter_schema(schema: CollectionSchema) -> FilterSchema:
    """The view of a schema the filter compiler needs (one definition: ``schemas.filters.filter_view``)."""
    return filter_view(schema)


def same_schema(a: CollectionSchema, b: CollectionSchema) -> bool:
    """Equal apart from field ids and version: a repeated CreateCollection is then a no-op."""

    def norm(s: CollectionSchema) -> tuple[list[dict[str, Any]], bool, list[dict[str, Any]]]:
        fields = [{**f.to_dict(), "field_id": 0} for f in s.fields]
        return fields, s.enable_dynamic_field, [fn.to_dict() for fn in s.functions]

    return norm(a) == norm(b)


def parse_properties(kvs: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in kvs:
        if not kv.key:
            raise InvalidArgument("property keys cannot be empty")
        out[kv.key] = kv.value
    return out
