"""``/v2/vectordb/entities/*``: insert, upsert, delete, get, query, search, hybrid_search."""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, RRFRanker, WeightedRanker
from pymilvus.client.prepare import Prepare
from pymilvus.client.types import get_consistency_level
from pymilvus.client.utils import len_of
from pymilvus.exceptions import MilvusException

from gateway.errors import INVALID_PARAMETER
from gateway.rest.calls import (
    CHECK_PRIMARY_KEY,
    INVALID_INSERT_DATA,
    OPERATION_NOT_SUPPORTED,
    Body,
    RestError,
    Rpc,
    client_side,
    missing,
    ok,
)
from gateway.rest.rows import collection_schema, ids_list, primary_field, rows_from_fields_data, search_rows

DEFAULT_LIMIT = 100  # Milvus's REST default for query and search
VECTOR_TYPES = {
    "FLOAT_VECTOR",
    "FLOAT16_VECTOR",
    "BFLOAT16_VECTOR",
    "BINARY_VECTOR",
    "SPARSE_FLOAT_VECTOR",
    "INT8_VECTOR",
}


def _rows(body: Body) -> list[dict[str, Any]]:
    data = body.get("data")
    if isinstance(data, dict):
        data = [data]
    if not data:
        raise missing("data")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise RestError(
            INVALID_INSERT_DATA, "fail to deal the insert data, error: data must be a list of JSON objects"
        )
    return data


def _encode(build: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return build(*args, **kwargs)
    except MilvusException as exc:
        raise RestError(INVALID_INSERT_DATA, f"fail to deal the insert data, error: {exc.message}") from exc
    except (TypeError, ValueError) as exc:
        raise RestError(INVALID_INSERT_DATA, f"fail to deal the insert data, error: {exc}") from exc


def insert(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    rows = _rows(body)
    schema = collection_schema(rpc, name)
    request = _encode(
        Prepare.row_insert_param,
        name,
        rows,
        body.str("partitionName"),
        schema["fields"],
        schema.get("struct_array_fields", []),
        enable_dynamic=schema.get("enable_dynamic_field", False),
        schema_timestamp=schema.get("update_timestamp", 0),
    )
    response = rpc("Insert", request)
    return ok(
        {
            "insertCount": response.insert_cnt,
            "insertIds": ids_list(response.IDs, int64_as_str=body.int64_as_str),
        }
    )


def upsert(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    rows = _rows(body)
    schema = collection_schema(rpc, name)
    request = _encode(
        Prepare.row_upsert_param,
        name,
        rows,
        body.str("partitionName"),
        schema["fields"],
        schema.get("struct_array_fields", []),
        enable_dynamic=schema.get("enable_dynamic_field", False),
        schema_timestamp=schema.get("update_timestamp", 0),
        partial_update=body.bool("partialUpdate"),
    )
    response = rpc("Upsert", request)
    return ok(
        {
            "upsertCount": response.upsert_cnt,
            "upsertIds": ids_list(response.IDs, int64_as_str=body.int64_as_str),
        }
    )


def _pk_filter(rpc: Rpc, name: str, ids: Any) -> str:
    """``pk in [...]`` for the ``id`` of get and delete: one key or a list of keys."""
    keys = ids if isinstance(ids, list) else [ids]
    pk = primary_field(collection_schema(rpc, name))
    want = str if pk["type"] == 21 else int  # DataType.VARCHAR
    if not keys or not all(isinstance(k, want) and not isinstance(k, bool) for k in keys):
        raise RestError(
            CHECK_PRIMARY_KEY,
            f"please check the primary key and its' type can only in [int, string], error: "
            f"id must be {'a string' if want is str else 'an integer'} or a list of them",
        )
    return f"{pk['name']} in {json.dumps(keys)}"


def _consistency(body: Body) -> dict[str, Any]:
    level = body.str("consistencyLevel")
    if not level:
        return {"use_default_consistency": True}
    try:
        return {"use_default_consistency": False, "consistency_level": get_consistency_level(level)}
    except MilvusException as exc:
        raise RestError(
            INVALID_PARAMETER, f"invalid parameter: consistencyLevel {level!r}: {exc.message}"
        ) from exc


def delete(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    expr = body.str("filter")
    if not expr:
        if "id" not in body:
            raise missing("filter")
        expr = _pk_filter(rpc, name, body.get("id"))
    request = client_side(
        Prepare.delete_request,
        name,
        expr,
        body.str("partitionName") or None,
        _consistency(body).get("consistency_level", 0),
        expr_params=body.dict("exprParams"),
    )
    rpc("Delete", request)
    return ok()


def _query(rpc: Rpc, body: Body, name: str, expr: str, limit: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**_consistency(body), "expr_params": body.dict("exprParams")}
    if limit is not None:
        kwargs["limit"] = limit
    offset = body.int("offset", 0)
    if offset:
        kwargs["offset"] = offset
    request = client_side(
        Prepare.query_request,
        name,
        expr,
        body.strs("outputFields") or ["*"],
        body.strs("partitionNames"),
        **kwargs,
    )
    response = rpc("Query", request)
    count = len_of(response.fields_data[0]) if response.fields_data else 0
    return ok(rows_from_fields_data(response, count, int64_as_str=body.int64_as_str))


def query(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    return _query(rpc, body, name, body.str("filter"), body.int("limit", DEFAULT_LIMIT))


def get(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    if "id" not in body:
        raise missing("id")
    return _query(rpc, body, name, _pk_filter(rpc, name, body.get("id")), None)


def _search_param(params: dict[str, Any]) -> dict[str, Any]:
    """REST ``searchParams`` (``metricType``, ``params``) as pymilvus's search ``param``."""
    out = {k: v for k, v in params.items() if k not in ("metricType", "params")}
    metric = params.get("metricType") or params.get("metric_type")
    if metric:
        out["metric_type"] = metric
    inner = params.get("params", {})
    if not isinstance(inner, dict):
        raise RestError(INVALID_PARAMETER, "invalid parameter: searchParams.params must be a JSON object")
    out["params"] = inner
    return out


def _anns_field(schema: dict[str, Any], given: str) -> str:
    if given:
        return given
    vectors = [f["name"] for f in schema["fields"] if _type_name(f["type"]) in VECTOR_TYPES]
    return vectors[0] if len(vectors) == 1 else ""


def _type_name(code: int) -> str:
    try:
        return DataType(code).name
    except ValueError:
        return ""


def _grouping(body: Body) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if body.str("groupingField"):
        kwargs["group_by_field"] = body.str("groupingField")
        if "groupSize" in body:
            kwargs["group_size"] = body.int("groupSize")
        if "strictGroupSize" in body:
            kwargs["strict_group_size"] = body.bool("strictGroupSize")
    return kwargs


def _refuse_function_score(body: Body) -> None:
    if body.get("functionScore"):
        raise RestError(
            OPERATION_NOT_SUPPORTED,
            "unsupported operation: functionScore (rerank functions) is not supported by walvus; "
            "hybrid_search takes rerank rrf or weighted",
        )


def search(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    data = body.list("data", required=True)
    _refuse_function_score(body)
    schema = collection_schema(rpc, name)
    anns = _anns_field(schema, body.str("annsField"))
    offset = body.int("offset", 0)
    param = _search_param(body.dict("searchParams"))
    for key in ("radius", "range_filter"):  # the older top-level ``params`` of range search
        if key in body.dict("params"):
            param["params"].setdefault(key, body.dict("params")[key])
    request = client_side(
        Prepare.search_requests_with_expr,
        name,
        anns,
        param,
        body.int("limit", DEFAULT_LIMIT),
        data=data,
        expr=body.str("filter"),
        partition_names=body.strs("partitionNames"),
        output_fields=body.strs("outputFields"),
        schema=schema,
        expr_params=body.dict("exprParams"),
        **({"offset": offset} if offset else {}),
        **_grouping(body),
        **_consistency(body),
    )
    response = rpc("Search", request)
    rows, topks = search_rows(response.results, int64_as_str=body.int64_as_str)
    return ok(rows, topks=topks)


def _ranker(rerank: dict[str, Any]) -> Any:
    strategy = str(rerank.get("strategy", "")).lower()
    params = rerank.get("params") or {}
    if strategy == "rrf":
        return RRFRanker(int(params.get("k", 60)))
    if strategy == "weighted":
        weights = params.get("weights")
        if not isinstance(weights, list) or not weights:
            raise RestError(
                INVALID_PARAMETER, "invalid parameter: rerank weighted needs params.weights, a list"
            )
        return WeightedRanker(*weights, norm_score=bool(params.get("norm_score", True)))
    raise RestError(
        INVALID_PARAMETER, f"invalid parameter: rerank strategy {strategy!r}: expected rrf or weighted"
    )


def hybrid_search(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    subs = body.list("search", required=True)
    _refuse_function_score(body)
    schema = collection_schema(rpc, name)
    limit = body.int("limit", DEFAULT_LIMIT)
    partitions = body.strs("partitionNames")
    requests = []
    for raw in subs:  # each entry as the SearchRequest pymilvus puts in a HybridSearchRequest
        sub = Body(raw)
        params = _search_param(sub.dict("searchParams") or {"params": sub.dict("params")})
        if sub.str("metricType"):
            params["metric_type"] = sub.str("metricType")
        requests.append(
            client_side(
                Prepare.search_requests_with_expr,
                name,
                _anns_field(schema, sub.str("annsField")),
                params,
                sub.int("limit", limit),
                data=sub.list("data", required=True),
                expr=sub.str("filter"),
                partition_names=partitions,
                expr_params=sub.dict("exprParams"),
                schema=schema,
            )
        )
    request = client_side(
        Prepare.hybrid_search_request_with_ranker,
        name,
        requests,
        _ranker(body.dict("rerank")),
        limit,
        partition_names=partitions,
        output_fields=body.strs("outputFields"),
        **_grouping(body),
        **_consistency(body),
    )
    response = rpc("HybridSearch", request)
    rows, topks = search_rows(response.results, int64_as_str=body.int64_as_str)
    return ok(rows, topks=topks)
