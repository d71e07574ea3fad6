"""``alter_collection_field`` and ``alter_index_properties`` / ``drop_index_properties``.

A field's ``max_length`` or ``max_capacity`` can change, as Milvus allows.

The primary key and the partition key cannot change. ``max_length`` applies to VARCHAR fields and
to arrays of VARCHAR, ``max_capacity`` to arrays; a new limit checks the rows written after it,
rows already stored keep their values (as in Milvus). ``mmap.enabled`` is accepted and has no
effect, as at create time: walvus holds loaded segments in memory. Other keys are refused.

An index's ``mmap.enabled`` decides whether searchers memory-map its files (over the collection's
``mmap.enabled``); as for a collection, it changes only while the collection is released.
"""

from __future__ import annotations

from dataclasses import replace

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import OK
from gateway.schema_convert import parse_properties
from schemas.catalog import CatalogEvent
from schemas.exceptions import IndexNotFound, InvalidArgument
from schemas.types import DataType
from walvus.write_api import WriteApi

MMAP_KEYS = ("mmap.enabled", "mmap_enabled")
LIMITS = {"max_length": (1, 65_535), "max_capacity": (1, 4_096)}


def alter_collection_field(
    walvus: WriteApi, req: milvus_pb2.AlterCollectionFieldRequest
) -> common_pb2.Status:
    info = walvus.catalog.require(req.collection_name)
    field = info.schema.field(req.field_name)
    if field is None:
        raise InvalidArgument(f"field {req.field_name!r} does not exist in collection {info.name}")
    if field.is_primary or field.is_partition_key:
        raise InvalidArgument(
            f"field {field.name!r}: the primary key and the partition key cannot be altered"
        )
    props = parse_properties(req.properties)
    for key in req.delete_keys:
        if key not in MMAP_KEYS:
            raise InvalidArgument(f"field property {key!r} cannot be deleted; only mmap.enabled can")
    changes: dict[str, int] = {}
    for key, value in props.items():
        if key in MMAP_KEYS:
            continue
        if key not in LIMITS:
            raise InvalidArgument(
                f"field property {key!r} cannot be altered: only max_length, max_capacity and mmap.enabled can"
            )
        low, high = LIMITS[key]
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f"field {field.name!r}: {key} must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise InvalidArgument(f"field {field.name!r}: {key} must be in [{low}, {high}], got {number}")
        changes[key] = number
    is_array = field.dtype == DataType.ARRAY
    text = field.dtype == DataType.VARCHAR or (is_array and field.element_type == DataType.VARCHAR)
    if "max_length" in changes and not text:
        raise InvalidArgument(
            f"field {field.name!r}: max_length applies to VARCHAR fields and arrays of VARCHAR"
        )
    if "max_capacity" in changes and not is_array:
        raise InvalidArgument(f"field {field.name!r}: max_capacity applies to ARRAY fields")
    if changes:
        schema = info.schema.with_field_params(field.name, **changes)
        walvus.publish(info.evolve(CatalogEvent.ALTER_FIELD, schema=schema))
    return OK


def alter_index(walvus: WriteApi, req: milvus_pb2.AlterIndexRequest) -> common_pb2.Status:
    """``alter_index_properties`` (``extra_params``) and ``drop_index_properties`` (``delete_keys``)."""
    info = walvus.catalog.require(req.collection_name)
    key = next((k for k, i in info.indexes.items() if i.index_name == req.index_name), None)
    if key is None:
        raise IndexNotFound(info.name, req.index_name or None)
    changes = parse_properties(req.extra_params)
    for name in [*changes, *req.delete_keys]:
        if name != "mmap.enabled":
            raise InvalidArgument(f"index property {name!r} cannot be altered: only mmap.enabled can")
    if "mmap.enabled" in changes:
        value = changes["mmap.enabled"].strip().strip('"').lower()
        if value not in ("true", "false"):
            raise InvalidArgument(f"mmap.enabled must be true or false, got {changes['mmap.enabled']!r}")
        changes["mmap.enabled"] = value
    if info.loaded:
        raise InvalidArgument(
            f"can not alter mmap properties if collection loaded: release collection {info.name} first"
        )
    index = info.indexes[key]
    props = {k: v for k, v in {**index.properties, **changes}.items() if k not in set(req.delete_keys)}
    indexes = {**info.indexes, key: replace(index, properties=props)}
    walvus.publish(info.evolve(CatalogEvent.ALTER_INDEX, indexes=indexes))
    return OK
