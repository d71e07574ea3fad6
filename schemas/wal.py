"""The WAL record: one Kafka message = one Arrow IPC stream holding one record batch.

The header travels inside the Arrow schema's metadata under the key ``walvus.wal``, so
a record is self-describing wherever it is copied (CDC, dead-letter, tools).
See FORMAT.md for the exact layout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

import pyarrow as pa

from schemas.exceptions import RecordFormatError

HEADER_KEY = b"walvus.wal"
FORMAT_VERSION = 1


class Op(StrEnum):
    INSERT = "insert"
    UPSERT = "upsert"
    DELETE = "delete"
    FLUSH = "flush"
    DROP_PARTITION = "drop_partition"  # header.partition: every earlier row of it in this shard is gone


@dataclass(frozen=True)
class WalHeader:
    op: Op
    collection: str
    collection_id: int
    schema_version: int
    ts: int  # hybrid timestamp allocated when the write was accepted
    partition: str | None = None  # None: rows carry their partition in ``_partition``
    origin: str = ""  # the site that first accepted the write (CDC loop prevention)
    flush_id: str | None = None  # for FLUSH: who is waiting for it
    version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        d = asdict(self)
        d["op"] = str(self.op)
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> WalHeader:
        d = json.loads(raw)
        d["op"] = Op(d["op"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})  # newer writers may add keys


@dataclass(frozen=True)
class WalRecord:
    header: WalHeader
    batch: pa.RecordBatch | None = (
        None  # INSERT/UPSERT: rows; DELETE: the key column; FLUSH, DROP_PARTITION: none
    )

    @property
    def num_rows(self) -> int:
        return 0 if self.batch is None else self.batch.num_rows

    def with_header(self, **changes: object) -> WalRecord:
        return WalRecord(replace(self.header, **changes), self.batch)

    def encode(self) -> bytes:
        batch = self.batch if self.batch is not None else pa.record_batch([], schema=pa.schema([]))
        meta = dict(batch.schema.metadata or {})
        meta[HEADER_KEY] = self.header.to_json()
        schema = batch.schema.with_metadata(meta)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_batch(batch.replace_schema_metadata(meta))
        return sink.getvalue().to_pybytes()

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> WalRecord:
        try:
            reader = pa.ipc.open_stream(pa.py_buffer(raw))
            meta = reader.schema.metadata or {}
            header = WalHeader.from_json(meta[HEADER_KEY])
            batches = list(reader)
        except (pa.ArrowInvalid, OSError, KeyError, ValueError, TypeError) as exc:
            raise RecordFormatError(f"not a walvus WAL record: {exc}") from exc
        batch = batches[0] if batches else None
        if batch is not None and batch.num_columns == 0:
            batch = None
        if batch is not None:
            clean = {k: v for k, v in meta.items() if k != HEADER_KEY}
            batch = batch.replace_schema_metadata(clean or None)
        return cls(header, batch)
