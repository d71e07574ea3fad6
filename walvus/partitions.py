"""Partition routing: a named partition, or the partition key's hidden partitions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.collection import PARTITION_COLUMN, check_name
from schemas.exceptions import InvalidArgument, PartitionNotFound
from schemas.sharding import key_hashes
from schemas.stored_rows import hidden_partition_name

DEFAULT_NUM_PARTITIONS = 16


def partitions_for_keys(info: CollectionInfo, keys: pa.Array | list) -> np.ndarray:
    """Hidden partition index of each partition-key value."""
    arr = keys if isinstance(keys, pa.Array) else pa.array(keys)
    return (key_hashes(arr) % np.uint64(max(info.num_partitions, 1))).astype(np.int64)


def assign_partitions(info: CollectionInfo, batch: pa.RecordBatch, partition: str | None) -> pa.RecordBatch:
    """With a partition key, add a ``_partition`` column routing each row; else check the name."""
    pkey = info.schema.partition_key
    if pkey is None:
        if partition is not None and partition not in info.partitions:
            check_name(
                "partition", partition
            )  # as Milvus: an invalid name is a bad parameter, not "not found"
            raise PartitionNotFound(info.name, partition)
        return batch
    if partition is not None:
        raise InvalidArgument("a collection with a partition key does not accept partition names on write")
    idx = partitions_for_keys(info, batch.column(pkey.name))
    names = np.array([hidden_partition_name(i) for i in range(info.num_partitions)], dtype=object)
    return batch.append_column(PARTITION_COLUMN, pa.array(names[idx], type=pa.string()))
