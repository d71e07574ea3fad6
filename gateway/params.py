"""Reading Milvus request parameters: key-value lists, template values, consistency,
output fields, and the query vectors of a search.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus.grpc_gen import common_pb2, schema_pb2

from gateway.errors import NotSupported, PartitionNotLoaded
from schemas.catalog import CollectionInfo
from schemas.collection import META_FIELD, NAME_RE, CollectionSchema, FieldSchema
from schemas.exceptions import (
    CollectionNotLoaded,
    InvalidArgument,
    PartitionNotFound,
    RequestTooLarge,
)
from schemas.types import DataType
from walvus.searcher import Consistency, ConsistencyLevel

COUNT = "count(*)"
_TRUE = frozenset({"true", "1", "yes"})
_PH = common_pb2.PlaceholderType
# placeholder type -> (numpy type, or None for bfloat16; values per byte)
_BINARY_DECODERS: dict[int, tuple[Any, int]] = {_PH.BinaryVector: (np.uint8, 8)}
_FLOAT_DECODERS: dict[int, tuple[Any, int]] = {
    _PH.FloatVector: (np.float32, 1),
    _PH.Float16Vector: (np.float16, 1),
    _PH.BFloat16Vector: (None, 1),
    _PH.Int8Vector: (np.int8, 1),
}


def kv_dict(kvs: Iterable[common_pb2.KeyValuePair]) -> dict[str, str]:
    return {kv.key: kv.value for kv in kvs}


def as_bool(value: str | None, default: bool = False) -> bool:
    return default if value is None or value == "" else value.strip().lower() in _TRUE


def as_int(kv: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = kv.get(key)
    if raw is None or raw == "":
        if default is None:
            raise InvalidArgument(f"{key} is required")
        return default
    try:
        return int(float(raw)) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        raise InvalidArgument(f"{key} must be an integer, got {raw!r}") from None


def json_params(raw: str | None, what: str = "params") -> dict[str, Any]:
    """A JSON object parameter, as a new dict (callers may change it)."""
    if not raw:
        return {}
    return dict(_json_object(raw, what))


@functools.lru_cache(maxsize=1024)
def _json_object(raw: str, what: str) -> dict[str, Any]:  # clients repeat the same params
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"{what} must be a JSON object, got {raw!r}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {raw!r}")
    return value


def template_values(entries: Mapping[str, schema_pb2.TemplateValue]) -> dict[str, Any]:
    """``expr_template_values`` (filter placeholders such as ``{ids}``) as plain Python values."""
    return {name: _template_value(v) for name, v in entries.items()}


def _template_value(v: schema_pb2.TemplateValue) -> Any:
    which = v.WhichOneof("val")
    if which is None:
        return None
    if which == "array_val":
        return _template_array(v.array_val)
    return getattr(v, which)


def _template_array(a: schema_pb2.TemplateArrayValue) -> list[Any]:
    which = a.WhichOneof("data")
    if which is None:
        return []
    if which == "array_data":
        return [_template_array(x) for x in a.array_data.data]
    if which == "json_data":
        return [json.loads(x) for x in a.json_data.data]
    return list(getattr(a, which).data)


def consistency(info: CollectionInfo, level: int, guarantee_ts: int, use_default: bool) -> Consistency:
    """What pymilvus sends (level, guarantee timestamp, use-default flag) as a searcher Consistency."""
    if use_default:
        level = info.consistency_level
        if level == ConsistencyLevel.STRONG:
            guarantee_ts = 0
        elif level == ConsistencyLevel.BOUNDED:
            guarantee_ts = 2
        elif level == ConsistencyLevel.EVENTUALLY:
            guarantee_ts = 1
    try:
        return Consistency(ConsistencyLevel(level), int(guarantee_ts))
    except ValueError:
        raise InvalidArgument(f"unknown consistency level {level}") from None


def iterator_consistency(cons: Consistency, iterator: bool, guarantee_ts: int) -> Consistency:
    """A later page of an iterator carries the session timestamp its first page returned. The
    searcher only moves forward, so what the first page's barrier waited for is still applied:
    the page needs no new barrier, and it reads the rows live at that timestamp (a pinned
    snapshot, as Milvus reads at its MVCC timestamp)."""
    if iterator and guarantee_ts > 2:
        return Consistency(ConsistencyLevel.EVENTUALLY, int(guarantee_ts), snapshot=True)
    return cons


def check_request_size(limits: Any, message: Any) -> None:
    """Milvus's ``proxy.maxRequestSize``: refuse oversized writes and searches with a clear message."""
    size = message.ByteSize()
    if size > limits.max_request_mb * 1024 * 1024:
        raise RequestTooLarge(
            f"request size {size / 2**20:.1f} MB is over the limit of {limits.max_request_mb:g} MB: "
            "split it into smaller batches"
        )


def readable_partitions(info: CollectionInfo, requested: list[str] | None) -> list[str] | None:
    """The partitions a read may touch: the collection (or those partitions) must be loaded."""
    if not info.loaded:
        raise CollectionNotLoaded(info.name)
    if not info.loaded_partitions:
        return requested
    if requested is None:
        return list(info.loaded_partitions)
    for p in requested:
        if p not in info.loaded_partitions:
            raise PartitionNotLoaded(info.name, p)
    return requested


def partitions(info: CollectionInfo, names: Iterable[str]) -> list[str] | None:
    """Named partitions (checked), or None for all. Partition-key collections take no names."""
    names = [n for n in names if n]
    if not names:
        return None
    if info.schema.partition_key is not None:
        raise InvalidArgument(
            "not support manually specifying the partition names if partition key mode is used"
        )
    for name in names:
        if name not in info.partitions:
            raise PartitionNotFound(info.name, name)
    return names


@dataclass
class OutputPlan:
    """Which columns to fetch, and the ``output_fields`` names to report to the client."""

    columns: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    zone: str = "UTC"  # TIMESTAMPTZ values are written in this time zone
    time_fields: tuple[str, ...] = ()  # ...or as these components of it (``time_fields``)

    def add(self, column: str, name: str | None = None) -> None:
        """Fetch ``column`` and report it as ``name`` (the column's own name by default)."""
        if column not in self.columns:
            self.columns.append(column)
        name = column if name is None else name
        if name not in self.names:
            self.names.append(name)


def output_plan(
    schema: CollectionSchema,
    requested: Iterable[str],
    *,
    include: Iterable[str] = (),
    allow_count: bool = False,
) -> OutputPlan:
    """Resolve ``output_fields``: ``*``, schema fields, ``$meta``, dynamic keys and ``count(*)``.

    A dynamic key is fetched through ``$meta`` and reported under its own name, so pymilvus
    keeps only the requested keys of each row's dynamic fields.
    """
    plan = OutputPlan()
    for name in include:
        plan.add(name)
    dynamic_keys: list[str] = []
    for raw in requested:
        name = raw.strip()
        if not name:
            continue
        if name == "*":
            for f in schema.fields:
                plan.add(f.name)
            if schema.enable_dynamic_field:
                plan.add(META_FIELD)
        elif schema.field(name) is not None or (name == META_FIELD and schema.enable_dynamic_field):
            plan.add(name)
        elif allow_count and name.replace(" ", "").lower() == COUNT:
            plan.add(COUNT)
        elif schema.enable_dynamic_field and NAME_RE.match(name):
            dynamic_keys.append(name)
        else:
            raise InvalidArgument(f"field {name} not exist")
    if dynamic_keys and META_FIELD not in plan.names:
        for key in dynamic_keys:
            plan.add(META_FIELD, key)
    return plan


def vector_field(schema: CollectionSchema, anns_field: str | None) -> FieldSchema:
    """The field to search: the named one, or the collection's only vector field."""
    if anns_field:
        f = schema.field(anns_field)
        if f is None or not f.dtype.is_vector:
            raise InvalidArgument(
                f"failed to create query plan: failed to get field schema by name: "
                f"fieldName({anns_field}) not found or not a vector field"
            )
        return f
    vectors = schema.vector_fields
    if len(vectors) != 1:
        raise InvalidArgument("multiple anns_fields exist, please specify a anns_field in search_params")
    return vectors[0]


def query_vectors(f: FieldSchema, raw: bytes) -> np.ndarray:
    """The vectors of a ``PlaceholderGroup``: (nq, dim) float32, or (nq, dim/8) uint8 for binary fields."""
    group = common_pb2.PlaceholderGroup.FromString(raw)
    if len(group.placeholders) != 1:
        raise InvalidArgument(f"expected one placeholder of search vectors, got {len(group.placeholders)}")
    ph = group.placeholders[0]
    nq = len(ph.values)
    if nq == 0:
        raise InvalidArgument(
            "nq (number of search vectors per search request) should be in range [1, 16384]"
        )
    dim = int(f.dim or 0)
    binary = f.dtype == DataType.BINARY_VECTOR
    decoders = _BINARY_DECODERS if binary else _FLOAT_DECODERS
    if ph.type not in decoders:
        kind = _PH.Name(ph.type) if ph.type in _PH.values() else str(ph.type)
        raise InvalidArgument(f"field {f.name} is {f.dtype.name}: search vectors of type {kind} do not match")
    np_type, per_byte = decoders[ph.type]
    if (np_type is np.int8) != (f.dtype == DataType.INT8_VECTOR) and ph.type != _PH.FloatVector:
        raise InvalidArgument(
            f"field {f.name} is {f.dtype.name}: search vectors of type {_PH.Name(ph.type)} do not match"
        )
    item = 2 if np_type is None else np.dtype(np_type).itemsize
    width = dim // per_byte if binary else dim
    joined = b"".join(ph.values)
    if len(ph.values[0]) != width * item or len(joined) != nq * width * item:
        got = len(ph.values[0]) * per_byte // item
        raise InvalidArgument(f"the dim ({got}) of field data({f.name}) is not equal to schema dim ({dim})")
    if np_type is None:  # bfloat16: the high half of a float32
        return (
            (np.frombuffer(joined, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(nq, dim)
        )
    arr = np.frombuffer(joined, dtype=np_type).reshape(nq, width)
    return arr if np_type in (np.float32, np.uint8) else arr.astype(np.float32)


def column_vectors(f: FieldSchema, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Stored vectors (a query result column) as a search matrix."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n, dim = len(arr), int(f.dim or 0)
    if f.dtype == DataType.FLOAT_VECTOR:
        return pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, dim)
    raw = np.frombuffer(b"".join(arr.to_pylist()), dtype=np.uint8)
    if f.dtype == DataType.BINARY_VECTOR:
        return raw.reshape(n, dim // 8)
    if f.dtype == DataType.FLOAT16_VECTOR:
        return raw.view(np.float16).astype(np.float32).reshape(n, dim)
    if f.dtype == DataType.INT8_VECTOR:
        return raw.view(np.int8).astype(np.float32).reshape(n, dim)
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(n, dim)


def ids_list(ids: schema_pb2.IDs) -> list[Any]:
    which = ids.WhichOneof("id_field")
    return [] if which is None else list(getattr(ids, which).data)


def finite_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# ------------------------------------------------------------------------------ known keys
# Every key of a request's parameter lists that walvus reads (or that changes nothing walvus
# returns); anything else is refused, so a feature walvus lacks is never accepted and dropped.
_NOT_YET: dict[str, str] = {
    "search_aggregation": "search aggregation is not supported yet",
    "json_path": "grouping by a JSON path is not supported yet",
    "json_type": "grouping by a JSON path is not supported yet",
    "strict_cast": "grouping by a JSON path is not supported yet",
    "query_iter_last_element_offset": "element-level query iterators are not supported yet",
    "rank_group_scorer": "grouping hybrid search is not supported yet",
    "group_by_fields": "grouping search by several fields is not supported yet: use group_by_field",
}
_ROUTING = frozenset({"collection_id", "cluster_id"})  # client routing hints, about the same collection
SEARCH_KEYS = _ROUTING | {
    "topk",
    "offset",
    "round_decimal",
    "ignore_growing",
    "metric_type",
    "anns_field",
    "params",
    "iterator",
    "search_iter_v2",
    "search_iter_batch_size",
    "search_iter_last_bound",
    "search_iter_id",
    "group_by_field",
    "group_size",
    "strict_group_size",
    "hints",
    "order_by_fields",
    "timezone",  # output zone of TIMESTAMPTZ fields
    "time_fields",  # TIMESTAMPTZ output as its components (year, month, ...) in that zone
}
# index knobs walvus uses. pymilvus copies the top-level keys into ``params`` and the Node SDK
# copies ``params`` to the top level, so both levels accept both sets
SEARCH_PARAM_KEYS = SEARCH_KEYS | {
    "nprobe",
    "ef",
    "itopk_size",
    "reorder_k",
    "refine_k",
    "radius",
    "range_filter",
    "limit",
    "page_retain_order",  # walvus's pages always keep the order of the full result
    "drop_ratio_search",  # sparse fields
    "analyzer_name",  # full-text search on a field with multi-language analyzers
}
QUERY_KEYS = _ROUTING | {
    "limit",
    "offset",
    "ignore_growing",
    "iterator",
    "reduce_stop_for_best",
    "group_by_fields",
    "timezone",  # output zone of TIMESTAMPTZ fields
    "time_fields",  # TIMESTAMPTZ output as its components (year, month, ...) in that zone
    "query_iter_last_pk",  # pymilvus also puts the cursor in the filter, which walvus reads
    "order_by_fields",
}
RANK_KEYS = _ROUTING | {"strategy", "params", "limit", "offset", "round_decimal"}
HINTS = frozenset({"", "iterative_filter"})  # walvus picks pre-filter or brute force by selectivity


def check_known(kv: Mapping[str, Any], known: frozenset[str] | set[str], what: str) -> None:
    """Refuse a parameter walvus does not implement with a clear error, never ignore it."""
    for key in kv:
        if key in known:
            continue
        reason = _NOT_YET.get(key)
        if reason is not None:
            raise NotSupported(f"{reason} ({what}: {key}={str(kv[key])[:100]})")
        raise InvalidArgument(
            f"{what}: parameter {key!r} is not supported by walvus; supported: {', '.join(sorted(known))}"
        )
    hints = str(kv.get("hints", "") or "")
    if hints not in HINTS:
        raise NotSupported(
            f"{what}: hints: {hints} not supported (hints={hints!r}); walvus knows {sorted(HINTS - {''})}"
        )
