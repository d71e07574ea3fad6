"""Alias RPCs: create, alter, drop, describe and list collection aliases (per database).

An alias is another name for a collection, resolved by the catalog wherever a collection name
is accepted (``CatalogView.get``). Every change is one catalog record (``AliasInfo``), so an
``alter_alias`` switches readers atomically and CDC replicates it like any catalog record.
"""

from __future__ import annotations

import logging

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import OK
from schemas.exceptions import AliasNotFound
from walvus.catalog import CatalogView
from walvus.databases import current_db
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)


class AliasRpcs:
    def __init__(self, walvus: WriteApi) -> None:
        self.w = walvus

    @property
    def catalog(self) -> CatalogView:
        return self.w.catalog

    def create_alias(self, req: milvus_pb2.CreateAliasRequest) -> common_pb2.Status:
        self.w.aliases.create(req.collection_name, req.alias)
        log.info("alias created alias=%s collection=%s", req.alias, req.collection_name)
        return OK

    def alter_alias(self, req: milvus_pb2.AlterAliasRequest) -> common_pb2.Status:
        self.w.aliases.alter(req.collection_name, req.alias)
        log.info("alias altered alias=%s collection=%s", req.alias, req.collection_name)
        return OK

    def drop_alias(self, req: milvus_pb2.DropAliasRequest) -> common_pb2.Status:
        self.w.aliases.drop(req.alias)
        log.info("alias dropped alias=%s", req.alias)
        return OK

    def describe_alias(self, req: milvus_pb2.DescribeAliasRequest) -> milvus_pb2.DescribeAliasResponse:
        alias = self.catalog.alias(req.alias)
        info = None if alias is None else self.catalog.by_id(alias.collection_id)
        if alias is None or info is None or not info.active:
            raise AliasNotFound(req.alias, current_db())
        return milvus_pb2.DescribeAliasResponse(
            status=OK, db_name=current_db(), alias=alias.alias, collection=info.name
        )

    def list_aliases(self, req: milvus_pb2.ListAliasesRequest) -> milvus_pb2.ListAliasesResponse:
        """The aliases of one collection (named by its name, or by one of its aliases), or all."""
        if req.collection_name:
            info = self.catalog.require(req.collection_name)
            names = self.catalog.aliases(info.collection_id)
        else:
            names = [a for a in self.catalog.aliases() if self.catalog.get(a) is not None]  # this database's
        return milvus_pb2.ListAliasesResponse(
            status=OK, db_name=current_db(), collection_name=req.collection_name, aliases=names
        )
