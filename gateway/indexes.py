"""Index and load RPCs: create/describe/drop index, load/release collections and partitions.

An index is a catalog entry (``IndexInfo``); the indexer workers build it per sealed segment.
DescribeIndex reports progress from an injected ``index_progress(info, field)`` function, which
returns (indexed, total, pending) rows and, optionally, a fourth item: the reason some segment
failed to build (empty when none did). A failure makes the state ``Failed`` with that reason.
Loading is a catalog flag (``loaded`` with ``loaded_partitions`` empty meaning all) plus a
call to the searcher; searching an unloaded collection is an error, as in Milvus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import OK, IndexMissing, NotSupported
from gateway.params import kv_dict
from gateway.replicas import check_replicas, load_group
from schemas.catalog import CatalogEvent, CollectionInfo, IndexInfo
from schemas.exceptions import CollectionNotLoaded, IndexNotFound, InvalidArgument, PartitionNotFound
from schemas.index_spec import IndexSpec
from schemas.scalar_index import check_scalar_index, default_index_name, index_key
from walvus.gpu import require_gpu
from walvus.searcher import Searcher
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
# indexed, total, pending rows (and optionally the reason of failed builds)
IndexProgress = Callable[[CollectionInfo, str], tuple[int, int, int] | tuple[int, int, int, str]]


def no_progress(info: CollectionInfo, field: str) -> tuple[int, int, int]:
    return 0, 0, 0


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _build_params(extra: dict[str, str]) -> dict[str, Any]:
    """CreateIndex's extra params as one flat dict: ``params`` (JSON) merged with loose keys."""
    out = {k: _decode(v) for k, v in extra.items() if k not in ("params", "index_type", "metric_type", "dim")}
    nested = _decode(extra.get("params", "") or "{}")
    if not isinstance(nested, dict):
        raise InvalidArgument(f"index params must be a JSON object, got {extra.get('params')!r}")
    out.update(nested)
    out.pop("metric_type", None)
    out.pop("index_type", None)
    return out


class IndexRpcs:
    def __init__(
        self, walvus: WriteApi, searcher: Searcher, index_progress: IndexProgress | None = None
    ) -> None:
        self.w = walvus
        self.searcher = searcher
        self.progress = index_progress or no_progress

    # indexes --------------------------------------------------------------------------------
    def create_index(self, req: milvus_pb2.CreateIndexRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        field = info.schema.field(req.field_name)
        extra = kv_dict(req.extra_params)
        nested = _decode(extra.get("params", "") or "{}")
        nested = nested if isinstance(nested, dict) else {}
        index_type = str(extra.get("index_type") or nested.get("index_type") or "AUTOINDEX").strip().upper()
        metric = str(extra.get("metric_type") or nested.get("metric_type") or "").strip().upper() or None
        params = _build_params(extra)
        if field is not None and field.dtype.is_sparse:
            metric = metric or ("BM25" if field.is_function_output else None)
            if field.is_function_output != (metric == "BM25"):
                raise InvalidArgument(
                    f"field {field.name}: metric BM25 is for the output field of a BM25 function, and such a "
                    f"field takes metric BM25 only (got {metric or 'IP'})"
                )
        if field is not None and field.dtype.is_vector:
            spec = IndexSpec.parse(index_type, metric, params, int(field.dim or 0), field.dtype.name)
            if spec.is_gpu:
                require_gpu(spec.index_type)  # refused up front, not left to fail in the index worker
            metric = spec.metric
        else:
            raw = str(extra.get("index_type") or nested.get("index_type") or "AUTOINDEX")
            params = check_scalar_index(info.schema, req.field_name, index_type, params, raw)
        field_name = req.field_name
        json_path = params.get("json_path")
        default = (
            field_name if json_path is None else default_index_name(info.schema, field_name, str(json_path))
        )
        name = req.index_name or default
        key = index_key(field_name, name, json_path)
        for other_key, other in info.indexes.items():
            if other.index_name == name and other_key != key:
                raise InvalidArgument(f"index name {name} is already used by field {other.field}")
            if (
                json_path is not None
                and other_key != key
                and other.field == field_name
                and (other.params.get("json_path"), str(other.params.get("json_cast_type", "")).upper())
                == (json_path, str(params.get("json_cast_type", "")).upper())
            ):
                raise InvalidArgument(
                    "CreateIndex failed: creating multiple indexes on same field is not supported "
                    f"(json path {json_path} of field {field_name} is indexed as {other.index_name})"
                )
        existing = info.indexes.get(key)
        if existing is not None:
            same = (
                existing.index_name,
                existing.index_type,
                existing.metric_type,
                dict(existing.params),
            ) == (name, index_type, metric or "", params)
            if same:
                return OK
            raise InvalidArgument(
                f"at most one distinct index is allowed per field: field {field_name} already has index "
                f"{existing.index_name} ({existing.index_type}); drop it first"
            )
        ts = self.w.clock.now()
        index = IndexInfo(field_name, name, index_type, metric or "", params, index_id=ts, created_ts=ts)
        self.w.publish(info.evolve(CatalogEvent.CREATE_INDEX, indexes={**info.indexes, key: index}))
        log.info(
            "index created collection=%s field=%s name=%s type=%s metric=%s",
            info.name,
            field_name,
            name,
            index_type,
            metric,
        )
        return OK

    def _matching(self, info: CollectionInfo, index_name: str, field_name: str) -> dict[str, IndexInfo]:
        found = {
            k: i
            for k, i in info.indexes.items()
            if (not index_name or i.index_name == index_name) and (not field_name or i.field == field_name)
        }
        if not found:
            raise IndexNotFound(info.name, index_name or field_name or None)
        return found

    def describe_index(self, req: milvus_pb2.DescribeIndexRequest) -> milvus_pb2.DescribeIndexResponse:
        info = self.w.catalog.require(req.collection_name)
        found = self._matching(info, req.index_name, req.field_name)
        return milvus_pb2.DescribeIndexResponse(
            status=OK, index_descriptions=[self._describe(info, i) for i in found.values()]
        )

    def _describe(self, info: CollectionInfo, index: IndexInfo) -> milvus_pb2.IndexDescription:
        params = [common_pb2.KeyValuePair(key="index_type", value=index.index_type)]
        if index.metric_type:
            params.append(common_pb2.KeyValuePair(key="metric_type", value=index.metric_type))
        for key, value in {**index.params, **index.properties}.items():
            params.append(
                common_pb2.KeyValuePair(key=key, value=value if isinstance(value, str) else json.dumps(value))
            )
        desc = milvus_pb2.IndexDescription(
            index_name=index.index_name, indexID=index.index_id, field_name=index.field, params=params
        )
        field = info.schema.field(index.field)
        if field is None or not field.dtype.has_index_file:  # scalar and sparse: nothing to build
            desc.state = common_pb2.Finished
            return desc
        try:
            progress = self.progress(info, index.field)
        except Exception as exc:  # report the failure to the client instead of "in progress" forever
            log.exception("index progress failed collection=%s field=%s", info.name, index.field)
            desc.state = common_pb2.Failed
            desc.index_state_fail_reason = f"cannot read index progress: {exc}"
            return desc
        indexed, total, pending = progress[:3]
        fail_reason = str(progress[3]) if len(progress) > 3 else ""
        desc.indexed_rows, desc.total_rows, desc.pending_index_rows = int(indexed), int(total), int(pending)
        if fail_reason:
            desc.state = common_pb2.Failed
            desc.index_state_fail_reason = fail_reason
        else:
            desc.state = common_pb2.Finished if pending <= 0 else common_pb2.InProgress
        return desc

    def drop_index(self, req: milvus_pb2.DropIndexRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        try:
            found = self._matching(info, req.index_name, req.field_name)
        except IndexNotFound:
            return OK  # as Milvus does, dropping an index that is not there changes nothing
        if info.loaded:
            vectors = {f.name for f in info.schema.vector_fields}
            kind = "vector index" if any(i.field in vectors for i in found.values()) else "index"
            raise InvalidArgument(
                f"{kind} cannot be dropped on loaded collection {info.name}, please release it first"
            )
        indexes = {k: i for k, i in info.indexes.items() if k not in found}
        self.w.publish(info.evolve(CatalogEvent.DROP_INDEX, indexes=indexes))
        return OK

    # loading --------------------------------------------------------------------------------
    def _check_indexed(self, info: CollectionInfo) -> None:
        missing = [f.name for f in info.schema.vector_fields if f.name not in info.indexes]
        if missing:
            raise IndexMissing(
                f"there is no vector index on field: {missing}, please create index firstly: "
                f"collection={info.name}"
            )

    def load_collection(self, req: milvus_pb2.LoadCollectionRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        replicas = check_replicas(req, self.searcher) or info.replica_number
        placement = load_group(self.w.catalog, info, req)
        self._check_indexed(info)
        if placement is not None:
            self.w.catalog.publish_records([placement])
        if not info.loaded or info.loaded_partitions or replicas != info.replica_number:
            info = self.w.publish(
                info.evolve(CatalogEvent.LOAD, loaded=True, loaded_partitions=(), replica_number=replicas)
            )
        self.searcher.load(info.name)
        return OK

    def release_collection(self, req: milvus_pb2.ReleaseCollectionRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        self.searcher.release(info.name)
        if info.loaded:
            self.w.publish(info.evolve(CatalogEvent.RELEASE, loaded=False, loaded_partitions=()))
        return OK

    def _partitions(self, info: CollectionInfo, names: Any) -> list[str]:
        names = list(names)
        if not names:
            raise InvalidArgument("partition names must not be empty")
        for p in names:
            if p not in info.partitions:
                raise PartitionNotFound(info.name, p)
        return names

    def load_partitions(self, req: milvus_pb2.LoadPartitionsRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        if check_replicas(req, self.searcher) > 1:
            raise NotSupported(
                "replica_number with load_partitions: load the collection with replicas instead"
            )
        placement = load_group(self.w.catalog, info, req)
        names = self._partitions(info, req.partition_names)
        self._check_indexed(info)
        if placement is not None:
            self.w.catalog.publish_records([placement])
        if not info.loaded or (info.loaded_partitions and not set(names) <= set(info.loaded_partitions)):
            loaded = set(info.loaded_partitions) | set(names)
            order = [p for p in info.partitions if p in loaded]
            info = self.w.publish(info.evolve(CatalogEvent.LOAD, loaded=True, loaded_partitions=tuple(order)))
        self.searcher.load(info.name, names)
        return OK

    def release_partitions(self, req: milvus_pb2.ReleasePartitionsRequest) -> common_pb2.Status:
        info = self.w.catalog.require(req.collection_name)
        names = self._partitions(info, req.partition_names)
        if not info.loaded:
            return OK
        current = info.loaded_partitions or tuple(info.partitions)
        remaining = tuple(p for p in current if p not in set(names))
        self.searcher.release(info.name, names)
        if remaining != current:
            self.w.publish(
                info.evolve(CatalogEvent.RELEASE, loaded=bool(remaining), loaded_partitions=remaining)
            )
        return OK

    def _loaded(self, info: CollectionInfo, names: Any) -> bool:
        names = list(names)
        for p in names:
            if p not in info.partitions:
                raise PartitionNotFound(info.name, p)
        if not info.loaded:
            return False
        return not names or not info.loaded_partitions or set(names) <= set(info.loaded_partitions)

    def loading_progress(
        self, req: milvus_pb2.GetLoadingProgressRequest
    ) -> milvus_pb2.GetLoadingProgressResponse:
        info = self.w.catalog.require(req.collection_name)
        if not self._loaded(info, req.partition_names):
            raise CollectionNotLoaded(info.name)
        progress = int(self.searcher.loading_progress(info.name))
        return milvus_pb2.GetLoadingProgressResponse(status=OK, progress=progress, refresh_progress=progress)

    def load_state(self, req: milvus_pb2.GetLoadStateRequest) -> milvus_pb2.GetLoadStateResponse:
        info = self.w.catalog.require(req.collection_name)
        if not self._loaded(info, req.partition_names):
            return milvus_pb2.GetLoadStateResponse(status=OK, state=common_pb2.LoadStateNotLoad)
        done = self.searcher.loading_progress(info.name) >= 100
        state = common_pb2.LoadStateLoaded if done else common_pb2.LoadStateLoading
        return milvus_pb2.GetLoadStateResponse(status=OK, state=state)
