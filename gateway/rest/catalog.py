"""``/v2/vectordb/{partitions,aliases,databases}/*``."""

from __future__ import annotations

from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.rest.calls import Body, Rpc, ok


def _collection(body: Body) -> str:
    return body.str("collectionName", required=True)


def _partition(body: Body) -> str:
    return body.str("partitionName", required=True)


# partitions -------------------------------------------------------------------------------------
def create_partition(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.CreatePartitionRequest(
        collection_name=_collection(body), partition_name=_partition(body)
    )
    rpc("CreatePartition", request)
    return ok()


def drop_partition(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.DropPartitionRequest(
        collection_name=_collection(body), partition_name=_partition(body)
    )
    rpc("DropPartition", request)
    return ok()


def has_partition(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.HasPartitionRequest(
        collection_name=_collection(body), partition_name=_partition(body)
    )
    return ok({"has": rpc("HasPartition", request).value})


def list_partitions(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("ShowPartitions", milvus_pb2.ShowPartitionsRequest(collection_name=_collection(body)))
    return ok(list(response.partition_names))


def load_partitions(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.LoadPartitionsRequest(
        collection_name=_collection(body), partition_names=body.strs("partitionNames", required=True)
    )
    rpc("LoadPartitions", request)
    return ok()


def release_partitions(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.ReleasePartitionsRequest(
        collection_name=_collection(body), partition_names=body.strs("partitionNames", required=True)
    )
    rpc("ReleasePartitions", request)
    return ok()


def partition_stats(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.GetPartitionStatisticsRequest(
        collection_name=_collection(body), partition_name=_partition(body)
    )
    stats = rpc("GetPartitionStatistics", request).stats
    return ok({"rowCount": next((int(kv.value) for kv in stats if kv.key == "row_count"), 0)})


# aliases ----------------------------------------------------------------------------------------
def _alias(body: Body) -> str:
    return body.str("aliasName", required=True)


def create_alias(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("CreateAlias", milvus_pb2.CreateAliasRequest(collection_name=_collection(body), alias=_alias(body)))
    return ok()


def alter_alias(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("AlterAlias", milvus_pb2.AlterAliasRequest(collection_name=_collection(body), alias=_alias(body)))
    return ok()


def drop_alias(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("DropAlias", milvus_pb2.DropAliasRequest(alias=_alias(body)))
    return ok()


def describe_alias(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("DescribeAlias", milvus_pb2.DescribeAliasRequest(alias=_alias(body)))
    return ok(
        {
            "aliasName": response.alias,
            "collectionName": response.collection,
            "dbName": response.db_name or rpc.db,
        }
    )


def list_aliases(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("ListAliases", milvus_pb2.ListAliasesRequest(collection_name=body.str("collectionName")))
    return ok(list(response.aliases))


# databases --------------------------------------------------------------------------------------
def _properties(body: Body) -> list[common_pb2.KeyValuePair]:
    return [common_pb2.KeyValuePair(key=str(k), value=str(v)) for k, v in body.dict("properties").items()]


def create_database(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("dbName", required=True)
    rpc("CreateDatabase", milvus_pb2.CreateDatabaseRequest(db_name=name, properties=_properties(body)))
    return ok()


def drop_database(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("DropDatabase", milvus_pb2.DropDatabaseRequest(db_name=body.str("dbName", required=True)))
    return ok()


def list_databases(rpc: Rpc, body: Body) -> dict[str, Any]:
    return ok(list(rpc("ListDatabases", milvus_pb2.ListDatabasesRequest()).db_names))


def describe_database(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc(
        "DescribeDatabase", milvus_pb2.DescribeDatabaseRequest(db_name=body.str("dbName", required=True))
    )
    return ok(
        {
            "dbName": response.db_name,
            "dbID": response.dbID,
            "properties": [{"key": kv.key, "value": kv.value} for kv in response.properties],
        }
    )


def alter_database(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = body.str("dbName", required=True)
    rpc("AlterDatabase", milvus_pb2.AlterDatabaseRequest(db_name=name, properties=_properties(body)))
    return ok()


def drop_database_properties(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = milvus_pb2.AlterDatabaseRequest(
        db_name=body.str("dbName", required=True), delete_keys=body.strs("propertyKeys", required=True)
    )
    rpc("AlterDatabase", request)
    return ok()
