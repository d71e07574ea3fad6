"""Turn a validated batch into WAL messages: one per shard, routed by primary-key hash."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.sharding import shard_of
from schemas.topics import wal_topic
from schemas.wal import Op, WalHeader, WalRecord
from walvus.log import LogMessage


def shard_messages(
    namespace: str,
    info: CollectionInfo,
    op: Op,
    batch: pa.RecordBatch,
    *,
    ts: int,
    origin: str,
    partition: str | None,
) -> list[LogMessage]:
    topic = wal_topic(namespace, info.collection_id)
    keys = batch.column(info.schema.primary.name)
    shards = shard_of(keys, info.shards_num)
    out: list[LogMessage] = []
    for shard in np.unique(shards):
        part = batch if info.shards_num == 1 else batch.filter(pa.array(shards == shard))
        header = WalHeader(
            op=op,
            collection=info.name,
            collection_id=info.collection_id,
            schema_version=info.schema.version,
            ts=ts,
            partition=partition,
            origin=origin,
        )
        out.append(LogMessage(topic, int(shard), WalRecord(header, part).encode()))
    return out


def flush_messages(
    namespace: str, info: CollectionInfo, *, ts: int, origin: str, flush_id: str
) -> list[LogMessage]:
    return control_messages(namespace, info, Op.FLUSH, ts=ts, origin=origin, flush_id=flush_id)


def control_messages(
    namespace: str, info: CollectionInfo, op: Op, *, ts: int, origin: str, **header: str
) -> list[LogMessage]:
    """One row-less record per shard (FLUSH, DROP_PARTITION): it marks a position in each shard."""
    topic = wal_topic(namespace, info.collection_id)
    head = WalHeader(
        op=op,
        collection=info.name,
        collection_id=info.collection_id,
        schema_version=info.schema.version,
        ts=ts,
        origin=origin,
        **header,  # type: ignore[arg-type]
    )
    value = WalRecord(head).encode()
    return [LogMessage(topic, shard, value) for shard in range(info.shards_num)]
