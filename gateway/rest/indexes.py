"""``/v2/vectordb/indexes/*``: create, describe, list, drop; and the index part of collection create."""

from __future__ import annotations

import json
from typing import Any

from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import INDEX_NOT_FOUND
from gateway.rest.calls import Body, RestError, Rpc, client_side, ok


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _index_request(name: str, raw: Any) -> milvus_pb2.CreateIndexRequest:
    """One ``indexParams`` entry: ``fieldName``, ``indexName``, ``metricType``, ``indexType`` or
    ``params.index_type``, and the index's own ``params``."""
    spec = Body(raw)
    field = spec.str("fieldName", required=True)
    params = dict(spec.dict("params"))
    index_type = spec.str("indexType") or params.pop("index_type", None) or "AUTOINDEX"
    metric = spec.str("metricType") or params.pop("metric_type", None)
    params.pop("index_type", None)
    params.pop("metric_type", None)
    config: dict[str, Any] = {"index_type": index_type, "params": params}
    if metric:
        config["metric_type"] = metric
    return client_side(Prepare.create_index_request, name, field, config, index_name=spec.str("indexName"))


def create_indexes(rpc: Rpc, name: str, specs: list[Any]) -> None:
    requests = [_index_request(name, raw) for raw in specs]  # all well-formed before any is made
    for request in requests:
        rpc("CreateIndex", request)


def describe_indexes(rpc: Rpc, name: str, index_name: str) -> list[dict[str, Any]]:
    request = milvus_pb2.DescribeIndexRequest(collection_name=name, index_name=index_name)
    try:
        response = rpc("DescribeIndex", request)
    except RestError as exc:
        if index_name or exc.code != INDEX_NOT_FOUND:
            raise
        return []  # a collection without an index
    out = []
    for d in response.index_descriptions:
        params = {kv.key: _decode(kv.value) for kv in d.params}
        extra_params = params.pop("params", {})
        if not isinstance(extra_params, dict):
            extra_params = {"params": extra_params}
        out.append(
            {
                "fieldName": d.field_name,
                "indexName": d.index_name,
                "indexType": params.pop("index_type", ""),
                "metricType": params.pop("metric_type", ""),
                "indexState": common_pb2.IndexState.Name(d.state),
                "totalRows": d.total_rows,
                "indexedRows": d.indexed_rows,
                "pendingRows": d.pending_index_rows,
                "failReason": d.index_state_fail_reason,
                "params": {**params, **extra_params},
            }
        )
    return out


def create(rpc: Rpc, body: Body) -> dict[str, Any]:
    create_indexes(rpc, body.str("collectionName", required=True), body.list("indexParams", required=True))
    return ok()


def describe(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    return ok(describe_indexes(rpc, name, body.str("indexName", required=True)))


def list_indexes(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    rpc("DescribeCollection", milvus_pb2.DescribeCollectionRequest(collection_name=name))  # exists?
    return ok([i["indexName"] for i in describe_indexes(rpc, name, "")])


def drop(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.DropIndexRequest(
        collection_name=body.str("collectionName", required=True),
        index_name=body.str("indexName", required=True),
    )
    rpc("DropIndex", request)
    return ok()
