"""Database RPCs, and which database each request works in.

``request_database`` picks a request's database: its ``db_name`` field where it has one, else
pymilvus's ``dbname`` header (``MilvusClient(db_name=...)``, ``using_database``), else ``default``.
The servicer enters it (``walvus.databases.using_db``) around every handler, so every name the
handler resolves, through the catalog, the write API or the in-process searcher, is looked up in
that database.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import OK
from gateway.schema_convert import parse_properties
from schemas.catalog import DEFAULT_DB
from schemas.exceptions import DatabaseNotFound
from schemas.timestamps import physical_ms
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
# RPCs whose db_name names the database they act on, not the one they work in (a v2 grant may
# name a database that does not exist yet, or every database: "*")
DATABASE_RPCS = {
    "CreateDatabase", "DropDatabase", "DescribeDatabase", "AlterDatabase", "ListDatabases", "OperatePrivilegeV2"
}  # fmt: skip


def request_database(method: str, request: Any, context: grpc.ServicerContext | None) -> str:
    if method not in DATABASE_RPCS:
        name = getattr(request, "db_name", "")
        if name:
            return name
    for key, value in context.invocation_metadata() if context is not None else ():
        if key == "dbname" and value:
            return str(value)
    return DEFAULT_DB


def require_database(walvus: WriteApi, name: str) -> None:
    """A request naming a database that does not exist fails as Milvus's does (code 800)."""
    if walvus.catalog.database(name) is None:
        raise DatabaseNotFound(name)


class DatabaseRpcs:
    def __init__(self, walvus: WriteApi) -> None:
        self.w = walvus

    def list_databases(self, req: milvus_pb2.ListDatabasesRequest) -> milvus_pb2.ListDatabasesResponse:
        dbs = self.w.catalog.databases()
        return milvus_pb2.ListDatabasesResponse(
            status=OK,
            db_names=[d.name for d in dbs],
            db_ids=[d.db_id for d in dbs],
            created_timestamp=[d.created_ts for d in dbs],
        )

    def create_database(self, req: milvus_pb2.CreateDatabaseRequest) -> common_pb2.Status:
        self.w.databases.create(req.db_name, parse_properties(req.properties))
        log.info("database created name=%s", req.db_name)
        return OK

    def drop_database(self, req: milvus_pb2.DropDatabaseRequest) -> common_pb2.Status:
        self.w.databases.drop(req.db_name)
        log.info("database dropped name=%s", req.db_name)
        return OK

    def describe_database(
        self, req: milvus_pb2.DescribeDatabaseRequest
    ) -> milvus_pb2.DescribeDatabaseResponse:
        db = self.w.databases.require(req.db_name)
        return milvus_pb2.DescribeDatabaseResponse(
            status=OK,
            db_name=db.name,
            dbID=db.db_id,
            created_timestamp=physical_ms(db.created_ts) if db.created_ts else 0,
            properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in sorted(db.properties.items())],
        )

    def alter_database(self, req: milvus_pb2.AlterDatabaseRequest) -> common_pb2.Status:
        self.w.databases.alter(req.db_name, parse_properties(req.properties), list(req.delete_keys))
        return OK
