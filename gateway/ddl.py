"""Collection and partition RPCs: create, describe, list, drop, alter, statistics.

Every change is a new ``CollectionInfo`` state published on the catalog through the
``Walvus`` API; reads come from the in-memory catalog.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from gateway.errors import OK, NotSupported
from gateway.params import COUNT
from gateway.schema_convert import (
    field_from_proto,
    parse_properties,
    same_schema,
    schema_from_proto,
    schema_to_proto,
)
from schemas.catalog import TTL_PROPERTY, CatalogEvent, CollectionInfo
from schemas.collection import CollectionSchema, check_name, validate_schema
from schemas.exceptions import (
    CapacityExceeded,
    CollectionNotFound,
    InvalidArgument,
    PartitionNotFound,
    WalvusError,
)
from schemas.timestamps import physical_ms
from schemas.timestamptz import PROPERTY as TZ_PROPERTY
from schemas.timestamptz import check_zone
from walvus.databases import current_db
from walvus.searcher import Consistency, ConsistencyLevel, QueryRequest, Searcher
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
TTL = TTL_PROPERTY
MMAP = "mmap.enabled"
_BOOL_PROPERTIES = {MMAP, "collection.autocompaction.enabled", "lazyload.enabled", "interim_index.enabled"}


def update_timestamp(info: CollectionInfo) -> int:
    """What DescribeCollection reports as ``update_timestamp``: grows with every schema version,
    so a client whose cached schema is older than the collection's is told to refresh it."""
    return info.created_ts + info.schema.version - 1


def check_loaded_partition(info: CollectionInfo, partition: str) -> bool:
    return info.loaded and (not info.loaded_partitions or partition in info.loaded_partitions)


class CollectionRpcs:
    def __init__(self, walvus: WriteApi, searcher: Searcher) -> None:
        self.w = walvus
        self.searcher = searcher
        self._described: dict[str, tuple[CollectionInfo, milvus_pb2.DescribeCollectionResponse]] = {}

    # collections ----------------------------------------------------------------------------
    def create_collection(self, req: milvus_pb2.CreateCollectionRequest) -> common_pb2.Status:
        try:
            proto = schema_pb2.CollectionSchema.FromString(req.schema)
        except Exception as exc:  # protobuf's DecodeError carries no useful type
            raise InvalidArgument(
                f"the schema of collection {req.collection_name} cannot be decoded: {exc}"
            ) from exc
        if proto.name and proto.name != req.collection_name:
            raise InvalidArgument(
                f"collection name {req.collection_name!r} does not match the schema's name {proto.name!r}"
            )
        schema = schema_from_proto(proto)
        existing = self.w.catalog.get_collection(req.collection_name)
        if existing is not None:
            if same_schema(existing.schema, validate_schema(schema, max_dim=self.w.limits.max_dim)):
                return OK  # Milvus: creating the same collection twice is a no-op
            raise InvalidArgument(
                "create duplicate collection with different parameters, "
                f"collection: {req.collection_name}: collection already exists[collection={req.collection_name}]"
            )
        self.w.create_collection(
            req.collection_name,
            schema,
            shards_num=req.shards_num or 1,
            num_partitions=req.num_partitions or None,
            consistency_level=int(req.consistency_level),
            properties=_checked_properties(parse_properties(req.properties)),
        )
        log.info("collection created name=%s", req.collection_name)
        return OK

    def describe_collection(
        self, req: milvus_pb2.DescribeCollectionRequest
    ) -> milvus_pb2.DescribeCollectionResponse:
        info = self._lookup(req.collection_name, req.collectionID)
        aliases = self.w.catalog.aliases(info.collection_id)
        cached = self._described.get(info.qualified)
        if cached is not None and cached[0] is info and list(cached[1].aliases) == aliases:
            return cached[1]
        resp = milvus_pb2.DescribeCollectionResponse(
            status=OK,
            schema=schema_to_proto(info),
            collectionID=info.collection_id,
            created_timestamp=info.created_ts,
            created_utc_timestamp=physical_ms(info.created_ts),
            update_timestamp=update_timestamp(info),
            shards_num=info.shards_num,
            consistency_level=info.consistency_level,
            collection_name=info.name,
            properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in sorted(info.properties.items())],
            db_name=info.db_name,
            num_partitions=len(info.partitions),
            virtual_channel_names=[f"{info.name}_v{i}" for i in range(info.shards_num)],
            aliases=aliases,
        )
        self._described[info.qualified] = (info, resp)
        return resp

    def _lookup(self, name: str, collection_id: int = 0) -> CollectionInfo:
        if name:  # Milvus refuses an invalid name (pymilvus's has_collection raises, not False)
            check_name("collection", name)
        if not name and collection_id:
            info = self.w.catalog.by_id(collection_id)
            if info is None or not info.active:
                raise CollectionNotFound(str(collection_id))
            return info
        return self.w.catalog.require(name)

    def has_collection(self, req: milvus_pb2.HasCollectionRequest) -> milvus_pb2.BoolResponse:
        check_name("collection", req.collection_name)  # Milvus refuses an invalid name, not False
        return milvus_pb2.BoolResponse(status=OK, value=self.w.catalog.get(req.collection_name) is not None)

    def show_collections(self, req: milvus_pb2.ShowCollectionsRequest) -> milvus_pb2.ShowCollectionsResponse:
        infos = sorted(self.w.catalog.collections(db_name=current_db()), key=lambda c: c.name)
        if req.collection_names:
            wanted = set(req.collection_names)
            missing = wanted - {c.name for c in infos}
            if missing:
                raise CollectionNotFound(sorted(missing)[0])
            infos = [c for c in infos if c.name in wanted]
        if req.type == milvus_pb2.InMemory:
            infos = [c for c in infos if c.loaded]
        return milvus_pb2.ShowCollectionsResponse(
            status=OK,
            collection_names=[c.name for c in infos],
            collection_ids=[c.collection_id for c in infos],
            created_timestamps=[c.created_ts for c in infos],
            created_utc_timestamps=[physical_ms(c.created_ts) for c in infos],
            inMemory_percentages=[100 if c.loaded else 0 for c in infos],
            query_service_available=[c.loaded for c in infos],
            shards_num=[c.shards_num for c in infos],
        )

    def drop_collection(self, req: milvus_pb2.DropCollectionRequest) -> common_pb2.Status:
        info = self.w.droppable(req.collection_name)
        if info is None:
            return OK  # Milvus: dropping a missing collection succeeds
        if info.loaded:
            try:
                self.searcher.release(info.name)
            except WalvusError as exc:
                log.warning("release before drop failed collection=%s error=%s", info.name, exc)
        self.w.drop_collection(info.name)
        self._described.pop(info.qualified, None)
        log.info("collection dropped name=%s", info.name)
        return OK

    def rename_collection(self, req: milvus_pb2.RenameCollectionRequest) -> common_pb2.Status:
        old = self.w.catalog.get_collection(req.oldName)
        renamed = self.w.rename_collection(req.oldName, req.newName, req.newDBName)
        if old is not None:
            self._described.pop(old.qualified, None)
        log.info("collection renamed old=%s new=%s db=%s", req.oldName, renamed.name, renamed.db_name)
        return OK

    def alter_collection(self, req: milvus_pb2.AlterCollectionRequest) -> common_pb2.Status:
        info = self._lookup(req.collection_name, req.collectionID)
        given = parse_properties(req.properties)
        schema = _dynamic_field(info, given.pop(DYNAMIC_FIELD, None))
        changes = _checked_properties(given)
        if info.loaded and any(k.startswith("mmap") for k in [*changes, *req.delete_keys]):
            raise InvalidArgument(
                f"can not alter mmap properties if collection loaded: release collection {info.name} first"
            )
        props = {k: v for k, v in {**info.properties, **changes}.items() if k not in set(req.delete_keys)}
        self.w.publish(info.evolve(CatalogEvent.ALTER, properties=props, schema=schema))
        return OK

    def add_collection_field(self, req: milvus_pb2.AddCollectionFieldRequest) -> common_pb2.Status:
        info = self._lookup(req.collection_name, req.collectionID)
        try:
            proto = schema_pb2.FieldSchema.FromString(req.schema)
        except Exception as exc:
            raise InvalidArgument(f"the new field's schema cannot be decoded: {exc}") from exc
        new = field_from_proto(proto)
        self.w.add_field(info.name, new)
        return OK

    def alter_collection_schema(
        self, req: milvus_pb2.AlterCollectionSchemaRequest
    ) -> milvus_pb2.AlterCollectionSchemaResponse:
        """pymilvus 3.0's ``drop_collection_field`` (and ``add_collection_field`` through this RPC)."""
        info = self._lookup(req.collection_name, req.collectionID)
        op = req.action.WhichOneof("op")
        if op == "drop_request":
            drop = req.action.drop_request
            if drop.function_name:
                raise NotSupported("dropping a function is not supported yet")
            name = drop.field_name or next(
                (f.name for f in info.schema.fields if drop.field_id and f.field_id == drop.field_id), ""
            )
            if not name:
                raise InvalidArgument(f"field id {drop.field_id} does not exist in collection {info.name}")
            self.w.drop_field(info.name, name)
        elif op == "add_request":
            add = req.action.add_request
            if len(add.func_schema) or any(fi.index_name or len(fi.extra_params) for fi in add.field_infos):
                raise NotSupported(
                    "adding functions or indexes with alter_collection_schema is not supported yet"
                )
            if len(add.field_infos) != 1:
                raise InvalidArgument("alter_collection_schema adds one field at a time")
            self.w.add_field(info.name, field_from_proto(add.field_infos[0].field_schema))
        else:
            raise InvalidArgument("alter_collection_schema needs an add or a drop action")
        return milvus_pb2.AlterCollectionSchemaResponse(alter_status=OK)

    def collection_statistics(
        self, req: milvus_pb2.GetCollectionStatisticsRequest
    ) -> milvus_pb2.GetCollectionStatisticsResponse:
        info = self.w.catalog.require(req.collection_name)
        rows = self._row_count(info, None)
        stats = [common_pb2.KeyValuePair(key="row_count", value=str(rows))]
        try:  # walvus extras: segments, growing rows, rows scanned by searches (partition pruning shows here)
            extra = self.searcher.stats(info.name)
        except WalvusError:
            extra = {}
        stats += [
            common_pb2.KeyValuePair(key=k, value=str(v))
            for k, v in extra.items()
            if k != "row_count" and v is not None
        ]
        return milvus_pb2.GetCollectionStatisticsResponse(status=OK, stats=stats)

    def _row_count(self, info: CollectionInfo, partition: str | None) -> int:
        if partition is None:
            try:
                rows = self.searcher.stats(info.name).get("row_count")
                if rows is not None:
                    return int(rows)
            except WalvusError as exc:
                log.debug("searcher stats unavailable collection=%s error=%s", info.name, exc)
        if not info.loaded or (partition is not None and not check_loaded_partition(info, partition)):
            # Milvus counts persisted rows without loading the collection
            return self.w.persisted_rows(info.name, partition)
        table = self.searcher.query(
            QueryRequest(
                info.name,
                output_fields=[COUNT],
                partitions=None if partition is None else [partition],
                consistency=Consistency(ConsistencyLevel.EVENTUALLY, 1),
            )
        )
        return int(table.column(COUNT)[0].as_py()) if table.num_rows else 0

    # partitions -----------------------------------------------------------------------------
    def create_partition(self, req: milvus_pb2.CreatePartitionRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        limit = self.w.limits.max_collections
        used = sum(c.shards_num * len(c.partitions) for c in self.w.catalog.collections())
        if req.partition_name not in info.partitions and used + info.shards_num > limit:
            # a partition adds one channel per shard, as a collection does (Milvus's general capacity)
            raise CapacityExceeded(
                f"general capacity exceeded: over the limit of {limit} collections (shards x partitions count towards it: "
                f"{used} used, partition {req.partition_name} of {info.name} needs {info.shards_num})"
            )
        self.w.create_partition(req.collection_name, req.partition_name)
        return OK

    def drop_partition(self, req: milvus_pb2.DropPartitionRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        if req.partition_name in info.partitions and check_loaded_partition(info, req.partition_name):
            raise InvalidArgument(
                f"partition {req.partition_name} cannot be dropped, partition is loaded, please release it first"
            )
        self.w.drop_partition(req.collection_name, req.partition_name)
        return OK

    def has_partition(self, req: milvus_pb2.HasPartitionRequest) -> milvus_pb2.BoolResponse:
        check_name("collection", req.collection_name)
        check_name("partition", req.partition_name)
        info = self.w.catalog.require(req.collection_name)
        return milvus_pb2.BoolResponse(status=OK, value=req.partition_name in info.partitions)

    def show_partitions(self, req: milvus_pb2.ShowPartitionsRequest) -> milvus_pb2.ShowPartitionsResponse:
        info = self._lookup(req.collection_name, req.collectionID)
        names = sorted(info.partitions, key=lambda p: info.partitions[p])
        if req.partition_names:
            names = [p for p in names if p in set(req.partition_names)]
        return milvus_pb2.ShowPartitionsResponse(
            status=OK,
            partition_names=names,
            partitionIDs=[info.collection_id + info.partitions[p] for p in names],
            created_timestamps=[info.created_ts for _ in names],
            created_utc_timestamps=[physical_ms(info.created_ts) for _ in names],
            inMemory_percentages=[100 if check_loaded_partition(info, p) else 0 for p in names],
        )

    def partition_statistics(
        self, req: milvus_pb2.GetPartitionStatisticsRequest
    ) -> milvus_pb2.GetPartitionStatisticsResponse:
        info = self.w.catalog.require(req.collection_name)
        if req.partition_name not in info.partitions:
            raise PartitionNotFound(info.name, req.partition_name)
        rows = self._row_count(info, req.partition_name)
        return milvus_pb2.GetPartitionStatisticsResponse(
            status=OK, stats=[common_pb2.KeyValuePair(key="row_count", value=str(rows))]
        )


DYNAMIC_FIELD = "dynamicfield.enabled"


def _dynamic_field(info: CollectionInfo, value: str | None) -> CollectionSchema:
    """The schema after ``dynamicfield.enabled``: turning it on is a new schema version whose rows
    gain the ``$meta`` column (rows stored before read it as empty); turning it off is refused, as
    in Milvus."""
    if value is None:
        return info.schema
    on = value.strip().strip('"').lower()
    if on not in ("true", "false"):
        raise InvalidArgument(f"{DYNAMIC_FIELD} must be true or false, got {value!r}")
    if on == "false":
        if info.schema.enable_dynamic_field:
            raise InvalidArgument(
                f"the dynamic field of collection {info.name} cannot be disabled once enabled"
            )
        return info.schema
    if info.schema.enable_dynamic_field:
        return info.schema
    return replace(info.schema, enable_dynamic_field=True, version=info.schema.version + 1)


def _checked_properties(props: dict[str, str]) -> dict[str, str]:
    """Validate the properties walvus understands; others are kept as given, like Milvus does."""
    out = dict(props)
    if DYNAMIC_FIELD in out:  # a schema change, not a setting: only alter_collection_properties makes it
        raise NotSupported(
            f"{DYNAMIC_FIELD} is a schema setting: use enable_dynamic_field in the schema, or turn it on "
            "later with alter_collection_properties"
        )
    if TZ_PROPERTY in out:
        check_zone(out[TZ_PROPERTY])
    if TTL in out:
        try:
            ttl = int(out[TTL])
        except ValueError:
            raise InvalidArgument(f"{TTL} must be a whole number of seconds, got {out[TTL]!r}") from None
        if ttl < 0:
            raise InvalidArgument(f"{TTL} must be >= 0, got {ttl}")
        out[TTL] = str(ttl)
    for key in _BOOL_PROPERTIES & out.keys():
        value = out[key].strip().lower()
        if value not in ("true", "false"):
            raise InvalidArgument(f"{key} must be true or false, got {out[key]!r}")
    return out  # kept as given ("True" stays "True"), as Milvus does; readers compare case-blind
