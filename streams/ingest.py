"""Validate JSON records from the ingest topic and turn them into WAL messages.

A record is one JSON object::

    {"op": "insert" | "upsert", "collection": "c", "partition": "p"?, "row": {...}}   # or "rows": [{...}, ...]
    {"op": "delete", "collection": "c", "ids": [1, 2, 3]}                            # or "id": 1

``collection`` may be an alias; ``"db_name": "d"`` addresses a database other than ``default``.

Good records are batched (consecutive records with the same collection, op and
partition share one WAL record per shard); each bad one goes to the dead-letter topic
with its original bytes and a readable reason in the ``walvus.reason`` header.
Auto-generated ids are derived from the ingest position, so a replay after a crash
re-creates the same keys instead of duplicating rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import orjson
import pyarrow as pa

from schemas.catalog import DEFAULT_DB, CollectionInfo
from schemas.collection import CollectionSchema
from schemas.exceptions import DatabaseNotFound, WalvusError
from schemas.timestamps import HybridClock
from schemas.topics import dead_letter_topic, ingest_topic
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import Op
from walvus.catalog import Catalog
from walvus.databases import using_db
from walvus.log import LogMessage
from walvus.partitions import assign_partitions
from walvus.wal_writer import shard_messages

log = logging.getLogger(__name__)
MAX_ROWS_PER_RECORD = 4096
IngestInput = tuple[int, int, bytes | None]  # partition, offset, value


@dataclass
class _Good:
    info: CollectionInfo
    op: Op
    partition: str | None
    batch: pa.RecordBatch


class IngestValidator:
    def __init__(self, catalog: Catalog, origin: str, clock: HybridClock | None = None) -> None:
        self.catalog = catalog
        self.origin = origin
        self.clock = clock or HybridClock()
        self.ns = catalog.topic.rsplit(".", 1)[0]

    def process(self, records: Sequence[IngestInput]) -> list[LogMessage]:
        out: list[LogMessage] = []
        run: list[_Good] = []
        for partition, offset, raw in records:
            try:
                good = self._parse(partition, offset, raw)
            except (WalvusError, ValueError, TypeError, KeyError) as exc:
                out.append(self._dead(partition, offset, raw, str(exc)))
                continue
            if run and not _same_run(run[-1], good):
                out += self._flush_run(run)
                run = []
            run.append(good)
        if run:
            out += self._flush_run(run)
        return out

    def _parse(self, partition: int, offset: int, raw: bytes | None) -> _Good:
        if raw is None:
            raise ValueError("empty record")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"malformed JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError("a record must be a JSON object")
        try:
            op = Op(str(doc.get("op", "")).lower())
        except ValueError:
            raise ValueError(f"unknown op {doc.get('op')!r}: use insert, upsert or delete") from None
        if op not in (Op.INSERT, Op.UPSERT, Op.DELETE):
            raise ValueError(f"op {op} is not accepted on the ingest topic: use insert, upsert or delete")
        name = doc.get("collection")
        if not isinstance(name, str):
            raise ValueError("missing 'collection'")
        db = doc.get("db_name") or DEFAULT_DB
        if not isinstance(db, str) or self.catalog.database(db) is None:
            raise DatabaseNotFound(str(db))
        with using_db(db):
            info = self.catalog.require(name)
        part = doc.get("partition")
        if part is not None and part not in info.partitions:
            raise ValueError(f"partition not found[partition={part}] in collection {name}")
        if op == Op.DELETE:
            ids = doc["ids"] if "ids" in doc else [doc["id"]]
            if not isinstance(ids, list) or not ids:
                raise ValueError("delete needs 'ids': a non-empty list of primary keys")
            pk = info.schema.primary
            batch = build_batch(_pk_only(info), {pk.name: ids}, op="insert")  # type check the keys
            return _Good(info, op, part, batch)
        if "rows" not in doc and "row" not in doc:
            raise ValueError(f"an {op} record needs 'row' (an object) or 'rows' (a list of objects)")
        rows = doc["rows"] if "rows" in doc else [doc["row"]]
        if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS_PER_RECORD:
            raise ValueError(f"'rows' must be a list of 1..{MAX_ROWS_PER_RECORD} objects")
        auto = None
        if info.schema.primary.auto_id and op == Op.INSERT:
            base = (1 << 62) | (partition << 50) | (offset << 12)
            auto = base + np.arange(len(rows), dtype=np.int64)
        # validate this record alone, so a bad row never spoils the good records around it
        batch = build_batch(info.schema, rows_to_columns(info.schema, rows), op=str(op), auto_ids=auto)
        return _Good(info, op, part, assign_partitions(info, batch, part))

    def _flush_run(self, run: list[_Good]) -> list[LogMessage]:
        """Records were validated one by one; in one batch, a key's later rows win (upsert semantics)."""
        first = run[0]
        batch = pa.Table.from_batches([g.batch for g in run]).combine_chunks().to_batches()[0]
        return shard_messages(
            self.ns,
            first.info,
            first.op,
            batch,
            ts=self.clock.now(),
            origin=self.origin,
            partition=first.partition,
        )

    def _dead(self, partition: int, offset: int, raw: bytes | None, reason: str) -> LogMessage:
        log.warning("dead-letter ingest record partition=%s offset=%s reason=%s", partition, offset, reason)
        headers = [
            ("walvus.reason", reason.encode()),
            ("walvus.source", f"{ingest_topic(self.ns)}:{partition}:{offset}".encode()),
        ]
        return LogMessage(dead_letter_topic(self.ns), 0, raw, headers=headers)


def _same_run(a: _Good, b: _Good) -> bool:
    return a.info.collection_id == b.info.collection_id and a.op == b.op and a.partition == b.partition


def _pk_only(info: CollectionInfo) -> CollectionSchema:
    return CollectionSchema(fields=(replace(info.schema.primary, auto_id=False),))
