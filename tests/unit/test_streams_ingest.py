"""IngestValidator: JSON records from the ingest topic -> WAL messages, or dead letters. No Kafka."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from schemas.catalog import DEFAULT_PARTITION, CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import CollectionNotFound
from schemas.sharding import shard_of
from schemas.stored_rows import key_partition_names
from schemas.timestamps import HybridClock
from schemas.types import DataType as D
from schemas.wal import Op, WalRecord
from streams.ingest import IngestValidator
from walvus.log import LogMessage

NS = "ns"
DLQ = "ns.ingest.dlq"

ITEMS = CollectionInfo(
    "items",
    11,
    validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.INT64, is_primary=True),
                FieldSchema("vec", D.FLOAT_VECTOR, dim=3),
                FieldSchema("title", D.VARCHAR, max_length=20, nullable=True),
            ),
            enable_dynamic_field=True,
        )
    ),
    shards_num=4,
    partitions={DEFAULT_PARTITION: 0, "p1": 1},
)
AUTO = CollectionInfo(
    "auto",
    12,
    validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.INT64, is_primary=True, auto_id=True),
                FieldSchema("vec", D.FLOAT_VECTOR, dim=2),
            )
        )
    ),
    shards_num=2,
)
KEYED = CollectionInfo(
    "keyed",
    13,
    validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.VARCHAR, is_primary=True, max_length=10),
                FieldSchema("vec", D.FLOAT_VECTOR, dim=2),
                FieldSchema("tenant", D.INT64, is_partition_key=True),
            )
        )
    ),
    shards_num=2,
    partitions=key_partition_names(4),
    num_partitions=4,
)


class FakeCatalog:
    """The part of ``walvus.catalog.Catalog`` the validator uses."""

    topic = "ns.catalog"

    def __init__(self, *infos: CollectionInfo) -> None:
        self._by_name = {i.name: i for i in infos}

    def require(self, name: str) -> CollectionInfo:
        if name not in self._by_name:
            raise CollectionNotFound(name)
        return self._by_name[name]

    def by_id(self, collection_id: int) -> CollectionInfo | None:
        return next((c for c in self._by_name.values() if c.collection_id == collection_id), None)

    def collections(self) -> list[CollectionInfo]:
        return list(self._by_name.values())

    def database(self, name: str) -> object | None:
        return object() if name == "default" else None


def validator() -> IngestValidator:
    clock = HybridClock(now_ms=lambda: 1_000_000)
    return IngestValidator(FakeCatalog(ITEMS, AUTO, KEYED), "site-a", clock)  # type: ignore[arg-type]


def j(doc: Any) -> bytes:
    return orjson.dumps(doc)


def vec(i: int, dim: int = 3) -> list[float]:
    return [float(i)] * dim


def item(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": i, "vec": vec(i), **kw}


def split(msgs: list[LogMessage]) -> tuple[list[LogMessage], list[LogMessage]]:
    wal = [m for m in msgs if m.topic != DLQ]
    dead = [m for m in msgs if m.topic == DLQ]
    return wal, dead


def decoded(msgs: list[LogMessage]) -> list[tuple[LogMessage, WalRecord]]:
    out = []
    for m in msgs:
        rec = WalRecord.decode(m.value)
        assert m.topic == f"{NS}.wal.{rec.header.collection_id}"
        out.append((m, rec))
    return out


def check_routing(info: CollectionInfo, pairs: list[tuple[LogMessage, WalRecord]]) -> None:
    """Every row sits on the shard its primary key hashes to, one message per shard per run."""
    pk = info.schema.primary.name
    for m, rec in pairs:
        keys = rec.batch.column(pk)
        assert set(shard_of(keys, info.shards_num).tolist()) == {m.partition}
        assert 0 <= m.partition < info.shards_num


# ---------------------------------------------------------------------------- good records


def test_insert_rows_become_wal_records_routed_by_shard() -> None:
    rows = [item(i, title=f"t{i}") for i in range(40)]
    msgs = validator().process([(0, 5, j({"op": "insert", "collection": "items", "rows": rows}))])
    wal, dead = split(msgs)
    assert dead == []
    pairs = decoded(wal)
    assert len({m.partition for m, _ in pairs}) == len(pairs) > 1  # one message per shard
    check_routing(ITEMS, pairs)
    got = sorted((r for _, rec in pairs for r in rec.batch.to_pylist()), key=lambda r: r["id"])
    assert [r["id"] for r in got] == list(range(40))
    assert [r["title"] for r in got] == [f"t{i}" for i in range(40)]
    assert got[3]["vec"] == pytest.approx(vec(3))
    for _, rec in pairs:
        h = rec.header
        assert (h.op, h.collection, h.collection_id, h.schema_version) == (Op.INSERT, "items", 11, 1)
        assert h.origin == "site-a" and h.partition is None
    assert len({rec.header.ts for _, rec in pairs}) == 1  # one write, one timestamp


def test_single_row_form_partition_and_dynamic_fields() -> None:
    raw = j({"op": "insert", "collection": "items", "partition": "p1", "row": item(7, colour="red")})
    (m,) = validator().process([(0, 0, raw)])
    rec = WalRecord.decode(m.value)
    assert rec.header.partition == "p1"
    (r,) = rec.batch.to_pylist()
    assert r["id"] == 7 and orjson.loads(r["$meta"]) == {"colour": "red"}


def test_upsert_record() -> None:
    msgs = validator().process(
        [(0, 0, j({"op": "UPSERT", "collection": "items", "rows": [item(1), item(2)]}))]
    )
    pairs = decoded(msgs)
    assert {rec.header.op for _, rec in pairs} == {Op.UPSERT}
    assert sorted(r["id"] for _, rec in pairs for r in rec.batch.to_pylist()) == [1, 2]
    check_routing(ITEMS, pairs)


@pytest.mark.parametrize("doc", [{"ids": list(range(20))}, {"id": 3}])
def test_delete_record(doc: dict[str, Any]) -> None:
    msgs = validator().process([(0, 0, j({"op": "delete", "collection": "items", **doc}))])
    pairs = decoded(msgs)
    assert {rec.header.op for _, rec in pairs} == {Op.DELETE}
    for _, rec in pairs:
        assert rec.batch.schema.names == ["id"]
    keys = sorted(k for _, rec in pairs for k in rec.batch.column("id").to_pylist())
    assert keys == (doc["ids"] if "ids" in doc else [doc["id"]])
    check_routing(ITEMS, pairs)


def test_consecutive_records_share_wal_records_and_runs_keep_their_order() -> None:
    records = [
        (0, 0, j({"op": "insert", "collection": "items", "rows": [item(1)]})),
        (0, 1, j({"op": "insert", "collection": "items", "rows": [item(1, title="again")]})),
        (0, 2, j({"op": "delete", "collection": "items", "ids": [1]})),
        (0, 3, j({"op": "insert", "collection": "items", "partition": "p1", "row": item(1)})),
    ]
    pairs = decoded(validator().process(records))
    assert [(rec.header.op, rec.header.partition, rec.num_rows) for _, rec in pairs] == [
        (Op.INSERT, None, 2),  # key 1 twice in one insert run: later row wins downstream
        (Op.DELETE, None, 1),
        (Op.INSERT, "p1", 1),
    ]
    assert len({m.partition for m, _ in pairs}) == 1  # the same key always lands on the same shard
    assert [rec.header.ts for _, rec in pairs] == sorted({rec.header.ts for _, rec in pairs})


def test_partition_key_collection_gets_a_partition_column() -> None:
    rows = [{"id": f"k{i}", "vec": vec(i, 2), "tenant": i % 5} for i in range(30)]
    pairs = decoded(validator().process([(0, 0, j({"op": "insert", "collection": "keyed", "rows": rows}))]))
    check_routing(KEYED, pairs)
    parts = {p for _, rec in pairs for p in rec.batch.column("_partition").to_pylist()}
    assert parts <= set(KEYED.partitions) and len(parts) > 1


# ---------------------------------------------------------------------------- dead letters

BAD = [
    (b"{not json", "malformed JSON"),
    (b"", "malformed JSON"),
    (j([1, 2]), "must be a JSON object"),
    (j("insert"), "must be a JSON object"),
    (j({"op": "merge", "collection": "items", "row": {}}), "unknown op 'merge'"),
    (j({"collection": "items", "row": {}}), "unknown op"),
    (j({"op": "flush", "collection": "items"}), "flush is not accepted"),
    (j({"op": "insert", "row": item(1)}), "missing 'collection'"),
    (j({"op": "insert", "collection": "ghost", "row": item(1)}), "collection not found[collection=ghost]"),
    (
        j({"op": "insert", "collection": "items", "db_name": "nowhere", "row": item(1)}),
        "database not found[database=nowhere]",
    ),
    (j({"op": "insert", "collection": "items", "row": {"id": 1, "vec": [1.0, 2.0]}}), "'vec'"),
    (j({"op": "insert", "collection": "items", "row": {"id": 1}}), "missing field 'vec'"),
    (j({"op": "insert", "collection": "items", "row": {"vec": vec(1)}}), "missing primary key field 'id'"),
    (j({"op": "insert", "collection": "items", "row": item(1, title="x" * 21)}), "max_length 20"),
    (j({"op": "insert", "collection": "items", "row": item(1, id="one")}), "expects INT64"),
    (
        j({"op": "insert", "collection": "items", "partition": "nope", "row": item(1)}),
        "partition not found[partition=nope]",
    ),
    (j({"op": "insert", "collection": "items", "rows": []}), "'rows' must be a list"),
    (j({"op": "insert", "collection": "items", "rows": {"id": 1}}), "'rows' must be a list"),
    (j({"op": "insert", "collection": "items", "rows": [item(1), 5]}), "row 1 is not an object"),
    (j({"op": "upsert", "collection": "items", "rows": [item(1), item(1)]}), "duplicate primary key 1"),
    (j({"op": "delete", "collection": "items", "ids": []}), "non-empty list"),
    (j({"op": "delete", "collection": "items", "ids": ["a"]}), "expects INT64"),
    (j({"op": "insert", "collection": "auto", "row": {"id": 1, "vec": [0, 0]}}), "auto_id"),
]


@pytest.mark.parametrize("raw, reason", BAD, ids=[r for _, r in BAD])
def test_bad_records_go_to_the_dead_letter_topic_with_a_reason(raw: bytes, reason: str) -> None:
    msgs = validator().process([(2, 77, raw)])
    (m,) = msgs
    assert m.topic == DLQ and m.partition == 0
    assert m.value == raw  # the original bytes, untouched
    headers = dict(m.headers)
    assert reason in headers["walvus.reason"].decode(), headers["walvus.reason"]
    assert headers["walvus.source"] == b"ns.ingest:2:77"


def test_a_tombstone_value_is_dead_lettered() -> None:
    (m,) = validator().process([(0, 3, None)])
    assert m.topic == DLQ and m.value is None and dict(m.headers)["walvus.reason"] == b"empty record"


@pytest.mark.parametrize(
    "doc", [{"op": "insert", "collection": "items"}, {"op": "delete", "collection": "items"}]
)
def test_missing_rows_or_ids_is_dead_lettered(doc: dict[str, Any]) -> None:
    (m,) = validator().process([(0, 3, j(doc))])
    assert m.topic == DLQ and dict(m.headers)["walvus.reason"]


def test_good_records_around_bad_ones_still_pass() -> None:
    records = [
        (0, 0, j({"op": "insert", "collection": "items", "rows": [item(1), item(2)]})),
        (0, 1, j({"op": "insert", "collection": "items", "rows": [item(3), {"id": 4, "vec": [1.0]}]})),
        (0, 2, b"\xff garbage"),
        (0, 3, j({"op": "insert", "collection": "items", "rows": [item(5)]})),
        (0, 4, j({"op": "delete", "collection": "ghost", "ids": [1]})),
        (0, 5, j({"op": "delete", "collection": "items", "ids": [2]})),
    ]
    wal, dead = split(validator().process(records))
    assert [dict(m.headers)["walvus.source"] for m in dead] == [
        b"ns.ingest:0:1",
        b"ns.ingest:0:2",
        b"ns.ingest:0:4",
    ]
    assert [m.value for m in dead] == [records[1][2], records[2][2], records[4][2]]
    assert b"'vec'" in dict(dead[0].headers)["walvus.reason"]
    pairs = decoded(wal)
    inserted = sorted(
        k for _, r in pairs if r.header.op == Op.INSERT for k in r.batch.column("id").to_pylist()
    )
    deleted = [k for _, r in pairs if r.header.op == Op.DELETE for k in r.batch.column("id").to_pylist()]
    assert inserted == [1, 2, 5]  # no row of the bad record, none lost around it
    assert deleted == [2]


# ---------------------------------------------------------------------------- auto ids


def auto_records(offsets: list[int], partition: int = 0) -> list[tuple[int, int, bytes]]:
    return [
        (partition, o, j({"op": "insert", "collection": "auto", "rows": [{"vec": [o, i]} for i in range(3)]}))
        for o in offsets
    ]


def auto_ids(msgs: list[LogMessage]) -> dict[tuple[float, float], int]:
    """Row (by its vector, unique here) -> the id it was given."""
    out = {}
    for _, rec in decoded(msgs):
        for r in rec.batch.to_pylist():
            out[tuple(r["vec"])] = r["id"]
    return out


def test_auto_ids_are_derived_from_the_ingest_position() -> None:
    first = auto_ids(validator().process(auto_records([10, 11, 12])))
    again = auto_ids(validator().process(auto_records([10, 11, 12])))  # a replay after a crash
    assert first == again and len(first) == 9
    assert len(set(first.values())) == 9 and all(i > 0 for i in first.values())
    # a replay that starts later, in smaller chunks, still gives each record the same ids
    v = validator()
    chunked = {**auto_ids(v.process(auto_records([11]))), **auto_ids(v.process(auto_records([12])))}
    assert chunked == {k: i for k, i in first.items() if k[0] in (11.0, 12.0)}


def test_auto_ids_differ_between_ingest_partitions_and_offsets() -> None:
    a = set(auto_ids(validator().process(auto_records([5], partition=0))).values())
    b = set(auto_ids(validator().process(auto_records([5], partition=1))).values())
    c = set(auto_ids(validator().process(auto_records([6], partition=0))).values())
    assert not (a & b) and not (a & c) and not (b & c)
    pairs = decoded(validator().process(auto_records(list(range(20)))))
    check_routing(AUTO, pairs)
    ids = np.concatenate([rec.batch.column("id").to_numpy() for _, rec in pairs])
    assert len(np.unique(ids)) == 60


# ---------------------------------------------------------------------------- fixed bugs


def test_upsert_into_an_auto_id_collection() -> None:
    raw = j({"op": "upsert", "collection": "auto", "row": {"id": 5, "vec": [1.0, 2.0]}})
    pairs = decoded(validator().process([(0, 0, raw)]))
    assert [r["id"] for _, rec in pairs for r in rec.batch.to_pylist()] == [5]


def test_partition_name_on_a_partition_key_collection_is_dead_lettered() -> None:
    raw = j(
        {
            "op": "insert",
            "collection": "keyed",
            "partition": "_default_1",
            "row": {"id": "a", "vec": [0, 0], "tenant": 1},
        }
    )
    good = j({"op": "insert", "collection": "items", "row": item(1)})
    wal, dead = split(validator().process([(0, 0, raw), (0, 1, good)]))
    assert [m.value for m in dead] == [raw]
    assert len(wal) == 1
