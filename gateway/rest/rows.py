"""Rows in and out: a collection's schema as pymilvus describes it, and result rows as JSON.

Rows coming in are encoded by pymilvus's own ``Prepare.row_insert_param``/``row_upsert_param``
(the bytes a pymilvus client would send); rows going out are decoded by pymilvus's own
extractors, then made JSON-safe.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from pymilvus.client import entity_helper
from pymilvus.client.abstract import CollectionSchema
from pymilvus.client.types import HybridExtraList
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from gateway.rest.calls import Rpc


def collection_schema(rpc: Rpc, name: str) -> dict[str, Any]:
    """``describe_collection`` as pymilvus returns it (fields, dynamic field, update timestamp)."""
    response = rpc("DescribeCollection", milvus_pb2.DescribeCollectionRequest(collection_name=name))
    return CollectionSchema(raw=response).dict()


def primary_field(schema: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f.get("is_primary"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def rows_from_fields_data(response: Any, count: int, *, int64_as_str: bool = False) -> list[dict[str, Any]]:
    """``count`` rows from a response's ``fields_data`` (QueryResults or SearchResultData); with
    ``int64_as_str`` (``Accept-Type-Allow-Int64: false``) Int64 values are strings, as Milvus's."""
    if count == 0 or not response.fields_data:
        return [{} for _ in range(count)]
    _, dynamic_fields = entity_helper.extract_dynamic_field_from_result(response)
    names = [fd.field_name for fd in response.fields_data if fd.field_name != "$meta"]
    rows = [dict.fromkeys(names) for _ in range(count)]
    lazy = [fd for fd in response.fields_data if entity_helper.extract_row_data_from_fields_data_v2(fd, rows)]
    out = [dict(row) for row in HybridExtraList(lazy, rows, dynamic_fields=dynamic_fields)]
    if int64_as_str:
        for name in [fd.field_name for fd in response.fields_data if fd.type == schema_pb2.DataType.Int64]:
            for row in out:
                if row.get(name) is not None:
                    row[name] = str(row[name])
    return out


def ids_list(ids: schema_pb2.IDs, *, int64_as_str: bool = False) -> list[Any]:
    if ids.HasField("int_id"):
        return [str(i) for i in ids.int_id.data] if int64_as_str else list(ids.int_id.data)
    return list(ids.str_id.data)


def search_rows(
    data: schema_pb2.SearchResultData, *, int64_as_str: bool = False
) -> tuple[list[dict[str, Any]], list[int]]:
    """Milvus's REST shape: every hit of every query in one list, each row its output fields plus
    the primary key and ``distance``; ``topks`` says how many belong to each query."""
    topks = list(data.topks)
    rows = rows_from_fields_data(data, sum(topks), int64_as_str=int64_as_str)
    pk = data.primary_field_name or "id"
    for row, key, score in zip(
        rows, ids_list(data.ids, int64_as_str=int64_as_str), data.scores, strict=False
    ):
        row[pk] = key
        row["distance"] = score
    return rows, topks
