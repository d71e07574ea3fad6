"""The stored-row layout: how a WAL record becomes rows of a collection's ``rows`` and ``deletes``
tables (see FORMAT.md), shared by the writer (``streams``) and the readers (``searcher``, ``indexer``).

Every stored row carries the system columns of ``schemas.collection.SYSTEM_COLUMNS``. ``_seq``
orders the writes of one shard: the WAL offset shifted left by ``SEQ_SHIFT`` bits, plus the row's
index within its WAL record. A collection with a partition key spreads its rows over hidden
partitions named ``_default_0`` .. ``_default_{n-1}``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.catalog import DEFAULT_PARTITION
from schemas.collection import PARTITION_COLUMN
from schemas.segments import PARTITION_SHIFT
from schemas.wal import WalRecord

SEQ_SHIFT = 24  # _seq = offset << 24 | row index within the WAL record


def row_seqs(offset: int, n: int) -> np.ndarray:
    """The ``_seq`` of the ``n`` rows of the WAL record at ``offset``."""
    return (np.int64(offset) << SEQ_SHIFT) | np.arange(n, dtype=np.int64)


def hidden_partition_name(index: int) -> str:
    """The name of a partition-key collection's hidden partition ``index``."""
    return f"{DEFAULT_PARTITION}_{index}"


def key_partition_names(num_partitions: int) -> dict[str, int]:
    """A partition-key collection's hidden partitions, name -> partition id."""
    return {hidden_partition_name(i): i for i in range(num_partitions)}


def deletes_schema(pk_type: pa.DataType) -> pa.Schema:
    """The ``deletes`` table's schema: key tombstones, and partition tombstones (null ``_pk``)."""
    return pa.schema(
        [
            ("_pk", pk_type),
            (PARTITION_COLUMN, pa.string()),
            ("_shard", pa.int32()),
            ("_offset", pa.int64()),
            ("_seq", pa.int64()),
            ("_ts", pa.int64()),
            ("_segment", pa.int64()),
        ]
    )


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Bring a batch written under an older schema version to the current one (added fields -> null)."""
    if batch.schema.remove_metadata().equals(target):
        return batch
    cols = []
    for f in target:
        idx = batch.schema.get_field_index(f.name)
        cols.append(batch.column(idx).cast(f.type) if idx >= 0 else pa.nulls(batch.num_rows, type=f.type))
    return pa.RecordBatch.from_arrays(cols, schema=target)


def with_system_columns(
    record: WalRecord,
    offset: int,
    shard: int,
    seg: int,
    data_schema: pa.Schema,
    partition_ids: dict[str, int] | None = None,
) -> pa.RecordBatch:
    """The stored rows of an INSERT/UPSERT record: its data conformed to ``data_schema``, plus the
    system columns."""
    batch = record.batch
    assert batch is not None
    n = batch.num_rows
    if PARTITION_COLUMN in batch.schema.names:
        part = batch.column(PARTITION_COLUMN)
        batch = batch.drop_columns([PARTITION_COLUMN])
    else:
        part = pa.array([record.header.partition or DEFAULT_PARTITION] * n, type=pa.string())
    data = conform(batch, data_schema)
    extra = {
        PARTITION_COLUMN: part,
        "_shard": pa.array(np.full(n, shard, dtype=np.int32)),
        "_offset": pa.array(np.full(n, offset, dtype=np.int64)),
        "_seq": pa.array(row_seqs(offset, n)),
        "_ts": pa.array(np.full(n, record.header.ts, dtype=np.int64)),
        "_segment": pa.array(_segments(seg, part, partition_ids)),
    }
    arrays = list(data.columns) + list(extra.values())
    names = list(data.schema.names) + list(extra)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _segments(seg: int, part: pa.Array, partition_ids: dict[str, int] | None) -> np.ndarray:
    """The segment id of each row: the seal's id, plus the row's partition id (see ``segment_id``)."""
    n = len(part)
    if seg < 0 or not partition_ids:
        return np.full(n, seg, dtype=np.int64)
    enc = part.dictionary_encode()
    ids = np.array([partition_ids.get(v, 0) for v in enc.dictionary.to_pylist()], dtype=np.int64)
    return seg + (ids[enc.indices.to_numpy(zero_copy_only=False)] << PARTITION_SHIFT)
