"""``/v2/vectordb/collections/*``: create (quick setup or full schema), describe, list, has, drop,
rename, load, release, get_load_state, get_stats, alter_properties, drop_properties, flush."""

from __future__ import annotations

from typing import Any

from pymilvus import CollectionSchema, DataType, FieldSchema, Function, FunctionType
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from gateway.errors import INVALID_PARAMETER
from gateway.rest.calls import Body, RestError, Rpc, client_side, missing, ok
from gateway.rest.indexes import create_indexes, describe_indexes

VECTORS = {
    DataType.FLOAT_VECTOR,
    DataType.FLOAT16_VECTOR,
    DataType.BFLOAT16_VECTOR,
    DataType.BINARY_VECTOR,
    DataType.SPARSE_FLOAT_VECTOR,
    DataType.INT8_VECTOR,
}
TYPE_PARAMS = ("dim", "max_length", "max_capacity")


def _data_type(name: Any, what: str) -> DataType:
    """Milvus's REST type names are the proto's (``Int64``, ``VarChar``, ``FloatVector``...)."""
    try:
        return DataType(schema_pb2.DataType.Value(str(name)))
    except ValueError:
        names = ", ".join(n for n in schema_pb2.DataType.keys() if n not in ("None", "_ArrayOfStruct"))
        raise RestError(
            INVALID_PARAMETER, f"invalid parameter: {what} {name!r} is not one of {names}"
        ) from None


def _type_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in TYPE_PARAMS and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        out[key] = value
    return out


def _field(raw: Any, auto_id: bool) -> FieldSchema:
    f = Body(raw)
    name = f.str("fieldName", required=True)
    dtype = _data_type(f.str("dataType", required=True), f"dataType of field {name}")
    kwargs: dict[str, Any] = _type_params(f.dict("elementTypeParams"))
    if f.str("elementDataType"):
        kwargs["element_type"] = _data_type(f.str("elementDataType"), f"elementDataType of field {name}")
    if "defaultValue" in f:
        kwargs["default_value"] = f.get("defaultValue")
    primary = f.bool("isPrimary")
    return client_side(
        FieldSchema,
        name,
        dtype,
        description=f.str("description"),
        is_primary=primary,
        auto_id=auto_id if primary else False,
        is_partition_key=f.bool("isPartitionKey"),
        is_clustering_key=f.bool("isClusteringKey"),
        nullable=f.bool("nullable"),
        **kwargs,
    )


def _function(raw: Any) -> Function:
    f = Body(raw)
    kind = f.str("type", required=True)
    try:
        ftype = FunctionType[kind.upper()]
    except KeyError:
        raise RestError(INVALID_PARAMETER, f"invalid parameter: function type {kind!r}") from None
    return client_side(
        Function,
        f.str("name", required=True),
        ftype,
        input_field_names=f.strs("inputFieldNames", required=True),
        output_field_names=f.strs("outputFieldNames"),
        description=f.str("description"),
        params=f.dict("params") or None,
    )


def _custom_schema(body: Body) -> CollectionSchema:
    spec = Body(body.dict("schema"))
    auto_id = spec.bool("autoID") or spec.bool("autoId")
    fields = [_field(raw, auto_id) for raw in spec.list("fields", required=True)]
    functions = [_function(raw) for raw in spec.list("functions")]
    return client_side(
        CollectionSchema,
        fields,
        description=body.str("description"),
        enable_dynamic_field=spec.bool("enableDynamicField"),
        functions=functions or None,
    )


def _quick_schema(body: Body, params: Body) -> tuple[CollectionSchema, list[dict[str, Any]]]:
    """Milvus's quick setup: ``id`` and ``vector`` (FloatVector of ``dimension``), a dynamic field,
    an AUTOINDEX with ``metricType`` (COSINE), loaded at once."""
    dim = body.int("dimension")
    if not dim:
        raise missing("dimension")
    id_type = _data_type(body.str("idType", "Int64"), "idType")
    if id_type not in (DataType.INT64, DataType.VARCHAR):
        raise RestError(INVALID_PARAMETER, "invalid parameter: idType must be Int64 or VarChar")
    pk_kwargs: dict[str, Any] = {}
    if id_type == DataType.VARCHAR:
        pk_kwargs["max_length"] = _int_param(params, "max_length") if "max_length" in params else 65535
    pk_name = body.str("primaryFieldName", "id")
    vector_name = body.str("vectorFieldName", "vector")
    fields = [
        client_side(FieldSchema, pk_name, id_type, is_primary=True, auto_id=body.bool("autoID"), **pk_kwargs),
        client_side(FieldSchema, vector_name, DataType.FLOAT_VECTOR, dim=dim),
    ]
    dynamic = params.get("enableDynamicField", True)
    if isinstance(dynamic, str):
        dynamic = dynamic.lower() == "true"
    schema = client_side(
        CollectionSchema, fields, description=body.str("description"), enable_dynamic_field=bool(dynamic)
    )
    index = {
        "fieldName": vector_name,
        "indexName": vector_name,
        "metricType": body.str("metricType", "COSINE"),
    }
    return schema, [index]


CREATE_PARAMS = (
    "max_length",
    "enableDynamicField",
    "shardsNum",
    "consistencyLevel",
    "partitionsNum",
    "ttlSeconds",
    "mmap.enabled",
)


def _int_param(params: Body, key: str) -> int:
    value = params.get(key)
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise RestError(
            INVALID_PARAMETER, f"invalid parameter: params.{key} must be an integer, got {value!r}"
        ) from None


def _create_kwargs(params: Body) -> dict[str, Any]:
    unknown = sorted(set(params.raw) - set(CREATE_PARAMS))
    if unknown:
        raise RestError(
            INVALID_PARAMETER,
            f"invalid parameter: params {', '.join(unknown)} not supported by walvus; it takes {', '.join(CREATE_PARAMS)}",
        )
    kwargs: dict[str, Any] = {"consistency_level": params.str("consistencyLevel", "Bounded")}
    if "shardsNum" in params:
        kwargs["shards_num"] = _int_param(params, "shardsNum")
    if "partitionsNum" in params:
        kwargs["num_partitions"] = _int_param(params, "partitionsNum")
    properties: dict[str, Any] = {}
    if "ttlSeconds" in params:
        properties["collection.ttl.seconds"] = _int_param(params, "ttlSeconds")
    if "mmap.enabled" in params:
        properties["mmap.enabled"] = str(params.get("mmap.enabled")).lower()
    if properties:
        kwargs["properties"] = properties
    return kwargs


def create(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("collectionName", required=True)
    params = Body(body.dict("params"))
    if body.dict("schema").get("fields"):
        schema = _custom_schema(body)
        indexes = body.list("indexParams")
    else:
        schema, indexes = _quick_schema(body, params)
    request = client_side(Prepare.create_collection_request, name, schema, **_create_kwargs(params))
    rpc("CreateCollection", request)
    try:  # the collection and its indexes together, or nothing
        create_indexes(rpc, name, indexes)
        vectors = {f.name for f in schema.fields if f.dtype in VECTORS}
        if vectors and vectors <= {Body(i).str("fieldName") for i in indexes}:
            rpc("LoadCollection", milvus_pb2.LoadCollectionRequest(collection_name=name))
    except RestError:
        rpc("DropCollection", milvus_pb2.DropCollectionRequest(collection_name=name))
        raise
    return ok()


def _name(body: Body) -> str:
    return body.str("collectionName", required=True)


def list_collections(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("ShowCollections", milvus_pb2.ShowCollectionsRequest())
    return ok(list(response.collection_names))


def has(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("HasCollection", milvus_pb2.HasCollectionRequest(collection_name=_name(body)))
    return ok({"has": response.value})


def _field_out(f: schema_pb2.FieldSchema) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f.name,
        "id": f.fieldID,
        "type": schema_pb2.DataType.Name(f.data_type),
        "primaryKey": f.is_primary_key,
        "autoId": f.autoID,
        "partitionKey": f.is_partition_key,
        "clusteringKey": f.is_clustering_key,
        "nullable": f.nullable,
        "description": f.description,
    }
    if f.type_params:
        out["params"] = [{"key": kv.key, "value": kv.value} for kv in f.type_params]
    if f.data_type == schema_pb2.DataType.Array:
        out["elementType"] = schema_pb2.DataType.Name(f.element_type)
    return out


def describe(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = _name(body)
    coll = rpc("DescribeCollection", milvus_pb2.DescribeCollectionRequest(collection_name=name))
    state = rpc("GetLoadState", milvus_pb2.GetLoadStateRequest(collection_name=name)).state
    pk = next((f for f in coll.schema.fields if f.is_primary_key), None)
    data = {
        "collectionName": coll.collection_name,
        "collectionID": coll.collectionID,
        "dbName": rpc.db,
        "description": coll.schema.description,
        "autoId": bool(pk and pk.autoID),
        "fields": [_field_out(f) for f in coll.schema.fields],
        "functions": [
            {
                "name": fn.name,
                "type": schema_pb2.FunctionType.Name(fn.type),
                "inputFieldNames": list(fn.input_field_names),
                "outputFieldNames": list(fn.output_field_names),
                "params": [{"key": kv.key, "value": kv.value} for kv in fn.params],
            }
            for fn in coll.schema.functions
        ],
        "aliases": list(coll.aliases),
        "indexes": [
            {"fieldName": i["fieldName"], "indexName": i["indexName"], "metricType": i["metricType"]}
            for i in describe_indexes(rpc, name, "")
        ],
        "load": common_pb2.LoadState.Name(state),
        "shardsNum": coll.shards_num,
        "partitionsNum": coll.num_partitions,
        "consistencyLevel": common_pb2.ConsistencyLevel.Name(coll.consistency_level),
        "enableDynamicField": coll.schema.enable_dynamic_field,
        "properties": [{"key": kv.key, "value": kv.value} for kv in coll.properties],
    }
    return ok(data)


def drop(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("DropCollection", milvus_pb2.DropCollectionRequest(collection_name=_name(body)))
    return ok()


def rename(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.RenameCollectionRequest(
        oldName=_name(body),
        newName=body.str("newCollectionName", required=True),
        db_name=rpc.db,
        newDBName=body.str("newDbName"),
    )
    rpc("RenameCollection", request)
    return ok()


def load(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("LoadCollection", milvus_pb2.LoadCollectionRequest(collection_name=_name(body)))
    return ok()


def release(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("ReleaseCollection", milvus_pb2.ReleaseCollectionRequest(collection_name=_name(body)))
    return ok()


def load_state(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = _name(body)
    partitions = body.strs("partitionNames")
    request = milvus_pb2.GetLoadStateRequest(collection_name=name, partition_names=partitions)
    state = rpc("GetLoadState", request).state
    if state == common_pb2.LoadState.LoadStateNotExist:
        raise RestError(100, f"collection not found[collection={name}]")
    data: dict[str, Any] = {"loadState": common_pb2.LoadState.Name(state)}
    if state != common_pb2.LoadState.LoadStateNotLoad:
        progress = milvus_pb2.GetLoadingProgressRequest(collection_name=name, partition_names=partitions)
        data["loadProgress"] = rpc("GetLoadingProgress", progress).progress
    return ok(data)


def _row_count(stats: Any) -> int:
    return next((int(kv.value) for kv in stats if kv.key == "row_count"), 0)


def stats(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc(
        "GetCollectionStatistics", milvus_pb2.GetCollectionStatisticsRequest(collection_name=_name(body))
    )
    return ok({"rowCount": _row_count(response.stats)})


def alter_properties(rpc: Rpc, body: Body) -> dict[str, Any]:
    properties = [
        common_pb2.KeyValuePair(key=str(k), value=str(v)) for k, v in body.dict("properties").items()
    ]
    if not properties:
        raise missing("properties")
    rpc(
        "AlterCollection",
        milvus_pb2.AlterCollectionRequest(collection_name=_name(body), properties=properties),
    )
    return ok()


def drop_properties(rpc: Rpc, body: Body) -> dict[str, Any]:
    keys = body.strs("propertyKeys", required=True)
    rpc("AlterCollection", milvus_pb2.AlterCollectionRequest(collection_name=_name(body), delete_keys=keys))
    return ok()


def flush(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("Flush", milvus_pb2.FlushRequest(collection_names=[_name(body)]))
    return ok()
