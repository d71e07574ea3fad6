"""What ``walvus inspect`` prints: collections, segments, lag and storage usage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.compute as pc
from rich.console import Console, Group
from rich.table import Table

from schemas.topics import wal_topic
from walvus.api import Walvus
from walvus.exceptions import LogUnavailable
from walvus.filesystems import is_local
from walvus.index_progress import sealed_segments
from walvus.retention import WalRetention
from walvus.settings import KafkaSettings
from walvus.storage import DELETES, ROWS


def report(what: str, collection: str | None = None) -> str:
    ks = KafkaSettings()
    api = Walvus.connect(ks.bootstrap_servers or f"127.0.0.1:{ks.kafka_port}")
    try:
        if what == "snapshots":  # also of dropped collections: the name is not looked up
            table = _snapshots(api, collection)
        else:
            infos = [api.catalog.require(collection)] if collection else api.catalog.collections()
            table = {"collections": _collections, "segments": _segments, "lag": _lag, "storage": _storage}[
                what
            ](api, infos)
    finally:
        api.close()
    console = Console(record=True, width=140)
    with console.capture() as cap:
        for t in table if isinstance(table, list) else [table]:
            console.print(t, soft_wrap=isinstance(t, str))  # locations: whole lines, to copy
    return cap.get()


def _collections(api: Walvus, infos: list) -> Table:
    t = Table("collection", "id", "shards", "partitions", "indexes", "loaded", title="collections")
    for i in infos:
        idx = ", ".join(f"{f}:{x.index_type}/{x.metric_type}" for f, x in i.indexes.items())
        t.add_row(i.name, str(i.collection_id), str(i.shards_num), str(len(i.partitions)), idx, str(i.loaded))
    return t


def _segments(api: Walvus, infos: list) -> Table:
    t = Table(
        "collection", "segment", "shard", "rows", "first offset", "last offset", "indexed", title="segments"
    )
    for info in infos:
        data = api.store.read(info.collection_id, ROWS, columns=["_segment", "_shard", "_offset"])
        if data is None or data.num_rows == 0:
            continue
        built = api.store.indexes.built(info.collection_id)
        grouped = data.group_by(["_segment", "_shard"]).aggregate(
            [("_offset", "min"), ("_offset", "max"), ("_offset", "count")]
        )
        for row in grouped.sort_by("_segment").to_pylist():
            indexed = []
            for f, x in info.indexes.items():
                fd = info.schema.field(f)
                if fd is not None and fd.dtype.is_sparse:  # searched through an in-memory inverted index
                    indexed.append(f"{f} (in memory)")
                elif (row["_segment"], f, x.index_id) in built:
                    indexed.append(f)
            t.add_row(
                info.name,
                str(row["_segment"]),
                str(row["_shard"]),
                str(row["_offset_count"]),
                str(row["_offset_min"]),
                str(row["_offset_max"]),
                ", ".join(indexed) or "-",
            )
    return t


def _lag(api: Walvus, infos: list) -> Table:
    t = Table(
        "collection", "shard", "WAL end", "committed to Delta", "lag (records)", title="materialisation lag"
    )
    for info in infos:
        ends = api.kafka.end_offsets(wal_topic(api.ns, info.collection_id), info.shards_num)
        for shard, end in enumerate(ends):
            done = min(api.store.committed_offset(info.collection_id, k, shard) for k in (ROWS, DELETES))
            t.add_row(info.name, str(shard), str(end), str(done), str(max(0, end - 1 - done)))
    return t


def _storage(api: Walvus, infos: list) -> list[Table | str]:
    return [_usage(api, infos), _locations(api, infos)]


def _locations(api: Walvus, infos: list) -> str:
    """Where each collection lives, one line each, for readers outside walvus (README: reading the
    tables with polars, DuckDB or Spark)."""
    lines = []
    retention = WalRetention(api.kafka.conf)
    try:
        for info in infos:
            topic = wal_topic(api.ns, info.collection_id)
            try:
                marks = retention.watermarks(topic, info.shards_num)
                held = (
                    " (offsets kept per shard: "
                    + ", ".join(f"{s}: {m.low}..{m.high}" for s, m in marks.items())
                    + ")"
                )
            except LogUnavailable:
                held = ""
            lines += [
                f"{info.name} rows table: {api.store.table_uri(info.collection_id, ROWS)}",
                f"{info.name} deletes table: {api.store.table_uri(info.collection_id, DELETES)}",
                f"{info.name} index dir: {api.store.indexes.location(info.collection_id)}",
                f"{info.name} WAL topic: {topic}{held}",
            ]
    finally:
        retention.close()
    return "\n".join(lines)


def _usage(api: Walvus, infos: list) -> Table:
    t = Table("collection", "rows", "tombstones", "segments", "table bytes", "index bytes", title="storage")
    for info in infos:
        rows = api.store.read(info.collection_id, ROWS, columns=["_seq"])
        tombs = api.store.read(info.collection_id, DELETES, columns=["_seq"])
        idx = api.store.indexes.size(info.collection_id)
        t.add_row(
            info.name,
            str(rows.num_rows if rows is not None else 0),
            str(tombs.num_rows if tombs is not None else 0),
            str(len(sealed_segments(api.store, info.collection_id))),
            f"{_table_bytes(api, info.collection_id, idx):,}",
            f"{idx:,}",
        )
    return t


def _snapshots(api: Walvus, collection: str | None) -> Group:
    snaps = Table(
        "collection",
        "snapshot",
        "collection id",
        "rows v.",
        "deletes v.",
        "WAL offsets",
        "created",
        title="snapshots",
    )
    jobs = Table(
        "restore job", "snapshot", "source", "target", "state", "rows", "reason", title="restore jobs"
    )
    book = api.snapshots
    for r in book.snapshots(collection) if book is not None else []:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created_ms / 1000))
        offsets = ", ".join(f"{s}:{o}" for s, o in sorted(r.offsets.items()))
        snaps.add_row(
            r.collection,
            r.name,
            str(r.collection_id),
            str(r.rows_version),
            str(r.deletes_version),
            offsets,
            created,
        )
    for j in book.jobs() if book is not None else []:
        if collection is None or collection in (j.source, j.target):
            state = j.state.removeprefix("RestoreSnapshot")
            jobs.add_row(
                str(j.job_id),
                j.snapshot,
                j.source,
                j.target,
                state,
                f"{j.rows_done}/{j.rows_total}",
                j.reason,
            )
    return Group(snaps, jobs)


def _table_bytes(api: Walvus, collection_id: int, index_bytes: int) -> int:
    """Local tables: their folder on disk; an object store: the data files of the latest versions."""
    uri = api.store.collection_uri(collection_id)
    if is_local(uri):
        return _du(Path(uri.removeprefix("file://"))) - index_bytes
    snaps = [api.store.open(collection_id, kind) for kind in (ROWS, DELETES)]
    return sum(int(pc.sum(s.files().column("size_bytes")).as_py() or 0) for s in snaps if s is not None)


def _du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


__all__ = ["report", "pc"]
