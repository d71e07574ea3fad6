"""Alias RPCs: create, alter, drop, describe and list collection aliases.

An alias is another name for a collection, resolved by the catalog wherever a collection name
is accepted (``CatalogView.get``). Every change is one catalog record (``AliasInfo``), so an
``alter_alias`` switches readers atomically and CDC replicates it like any catalog record.
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import DEFAULT_DB, OK, DatabaseNotFound
from schemas.exceptions import AliasNotFound
from walvus.catalog import CatalogView

log = logging.getLogger(__name__)


def check_db(db_name: str) -> None:
    if db_name not in ("", DEFAULT_DB):
        raise DatabaseNotFound(db_name)


class AliasRpcs:
    def __init__(self, walvus: Any) -> None:
        self.w = walvus

    @property
    def catalog(self) -> CatalogView:
        return self.w.catalog

    def create_alias(self, req: milvus_pb2.CreateAliasRequest) -> common_pb2.Status:
        check_db(req.db_name)
        self.w.create_alias(req.collection_name, req.alias)
        log.info("alias created alias=%s collection=%s", req.alias, req.collection_name)
        return OK

    def alter_alias(self, req: milvus_pb2.AlterAliasRequest) -> common_pb2.Status:
        check_db(req.db_name)
        self.w.alter_alias(req.collection_name, req.alias)
        log.info("alias altered alias=%s collection=%s", req.alias, req.collection_name)
        return OK

    def drop_alias(self, req: milvus_pb2.DropAliasRequest) -> common_pb2.Status:
        check_db(req.db_name)
        self.w.drop_alias(req.alias)
        log.info("alias dropped alias=%s", req.alias)
        return OK

    def describe_alias(self, req: milvus_pb2.DescribeAliasRequest) -> milvus_pb2.DescribeAliasResponse:
        check_db(req.db_name)
        alias = self.catalog.alias(req.alias)
        info = None if alias is None else self.catalog.by_id(alias.collection_id)
        if alias is None or info is None or not info.active:
            raise AliasNotFound(req.alias)
        return milvus_pb2.DescribeAliasResponse(
            status=OK, db_name=DEFAULT_DB, alias=alias.alias, collection=info.name
        )

    def list_aliases(self, req: milvus_pb2.ListAliasesRequest) -> milvus_pb2.ListAliasesResponse:
        """The aliases of one collection (named by its name, or by one of its aliases), or all."""
        check_db(req.db_name)
        if req.collection_name:
            info = self.catalog.require(req.collection_name)
            names = self.catalog.aliases(info.collection_id)
        else:
            names = [a for a in self.catalog.aliases() if self.catalog.get(a) is not None]
        return milvus_pb2.ListAliasesResponse(
            status=OK, db_name=DEFAULT_DB, collection_name=req.collection_name, aliases=names
        )
