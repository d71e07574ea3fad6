"""Routing rules: loop prevention, origin stamping, name mapping, byte-for-byte copies."""

from __future__ import annotations

import json

import pyarrow as pa

from cdc import positions
from cdc.lag import ShardLag, summary
from cdc.routing import SKIP_FILTERED, SKIP_ORIGIN, Router, peek_header
from cdc.spec import TaskSpec
from schemas.catalog import CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema
from schemas.types import DataType
from schemas.wal import Op, WalHeader, WalRecord

SCHEMA = CollectionSchema(
    fields=(
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
    )
)


def _router(**changes: object) -> Router:
    req = {
        "name": "t",
        "source": {"bootstrap": "a:1", "namespace": "nsa", "site": "A"},
        "target": {"bootstrap": "b:1", "namespace": "nsb", "site": "B"},
        **changes,
    }
    return Router(TaskSpec.parse(req))


def _info(name: str = "docs", origin: str = "A", **kw: object) -> CollectionInfo:
    return CollectionInfo(name=name, collection_id=42, schema=SCHEMA, shards_num=3, origin=origin, **kw)


def _wal(origin: str = "A", collection: str = "docs", op: Op = Op.INSERT) -> bytes:
    header = WalHeader(op=op, collection=collection, collection_id=42, schema_version=1, ts=7, origin=origin)
    batch = pa.record_batch({"id": pa.array([1, 2], pa.int64())}) if op != Op.FLUSH else None
    return WalRecord(header, batch).encode()


def test_catalog_record_is_copied_byte_for_byte_to_the_target_catalog() -> None:
    raw = _info().to_json()
    d = _router().catalog(b"docs", raw)
    assert d.out is not None and d.out.topic == "nsb.catalog" and d.out.key == b"docs"
    assert d.out.value == raw
    assert d.collection is not None and (d.collection.collection_id, d.collection.shards_num) == (42, 3)
    assert d.collection.active and d.collection.schema_version == 1


def test_catalog_record_from_the_target_site_is_not_sent_back() -> None:
    d = _router().catalog(b"docs", _info(origin="B").to_json())
    assert d.out is None and d.skipped == SKIP_ORIGIN
    assert d.collection is not None  # the replicator still follows the collection's WAL


def test_empty_origin_becomes_the_source_site_and_names_are_mapped() -> None:
    d = _router(map={"docs": "docs_b"}).catalog(b"docs", _info(origin="").to_json())
    assert d.out is not None and d.out.key == b"docs_b"
    info = CollectionInfo.from_json(d.out.value)
    assert (info.name, info.origin, info.collection_id) == ("docs_b", "A", 42)


def test_collections_outside_the_task_are_filtered() -> None:
    d = _router(collections=["other"]).catalog(b"docs", _info().to_json())
    assert d.out is None and d.skipped == SKIP_FILTERED and d.collection is None


def test_dropped_state_and_tombstones_are_replicated() -> None:
    d = _router().catalog(b"docs", _info(state="dropped").to_json())
    assert d.out is not None and d.collection is not None and not d.collection.active
    t = _router(map={"docs": "d2"}).catalog(b"docs", None)
    assert t.out is not None and t.out.value is None and t.out.key == b"d2"


def test_wal_record_keeps_topic_id_partition_and_bytes() -> None:
    raw = _wal()
    d = _router().wal("nsa.wal.42", 2, raw)
    assert d.out is not None and (d.out.topic, d.out.partition) == ("nsb.wal.42", 2)
    assert d.out.value == raw and d.schema_version == 1


def test_wal_record_from_the_target_site_is_never_sent() -> None:
    d = _router().wal("nsa.wal.42", 0, _wal(origin="B"))
    assert d.out is None and d.skipped == SKIP_ORIGIN


def test_wal_record_without_origin_or_with_a_mapped_name_is_rewritten() -> None:
    d = _router(map={"docs": "docs_b"}).wal("nsa.wal.42", 0, _wal(origin=""))
    assert d.out is not None
    rec = WalRecord.decode(d.out.value)
    assert (rec.header.origin, rec.header.collection, rec.num_rows) == ("A", "docs_b", 2)
    assert rec.batch.column("id").to_pylist() == [1, 2]


def test_flush_and_malformed_records_are_copied() -> None:
    flush = _wal(op=Op.FLUSH)
    assert _router().wal("nsa.wal.42", 0, flush).out.value == flush
    d = _router().wal("nsa.wal.42", 0, b"not arrow")
    assert d.out is not None and d.out.value == b"not arrow"
    assert peek_header(b"not arrow") is None


def test_a_third_sites_records_pass_through() -> None:
    raw = _wal(origin="C")
    assert _router().wal("nsa.wal.42", 0, raw).out.value == raw


def test_position_records_round_trip() -> None:
    key, value = positions.encode("nsa.wal.42", 1, 17)
    assert key == b"nsa.wal.42:1"
    assert positions.decode(value) == ("nsa.wal.42", 1, 17)
    assert json.loads(value)["ts"] > 0
    assert positions.positions_topic("nsb", "abc") == "nsb.cdc.positions.abc"


def test_lag_summary() -> None:
    shards = [
        ShardLag("t", 0, 5, 5, 0, 0.0),
        ShardLag("t", 1, 3, 10, 7, 2.5),
        ShardLag("t", 2, 1, 2, 1, None),
    ]
    assert summary(shards) == {"records": 8, "seconds": 2.5, "caught_up": False}
    assert summary(shards[:1])["caught_up"]


def test_rename_and_aliases_follow_a_replicated_collection_by_id() -> None:
    from dataclasses import replace

    from schemas.catalog import RENAMED, AliasInfo, CatalogEvent

    r = _router(collections=["docs", "other"], map={"docs": "docs_b"})
    assert r.catalog(b"docs", _info().to_json()).out is not None
    renamed = r.catalog(b"papers", _info(name="papers", event=CatalogEvent.RENAME).to_json())
    assert renamed.out is not None and renamed.out.key == b"papers"  # not in the task's list: same id
    assert renamed.collection is not None and renamed.collection.active
    gone = r.catalog(b"docs", replace(_info(), state=RENAMED).to_json())
    assert gone.out is not None and gone.out.key == b"docs_b"  # the mapped old name is freed there
    assert gone.collection is not None and not gone.collection.active
    alias = AliasInfo("live", 42, "docs", origin="A")
    d = r.catalog(b"alias:live", alias.to_json())
    assert d.out is not None and d.out.key == b"alias:live" and d.collection is None
    assert json.loads(d.out.value)["collection"] == "docs_b"
    foreign = AliasInfo("x", 7, "unreplicated", origin="A")
    assert r.catalog(b"alias:x", foreign.to_json()).skipped == SKIP_FILTERED
    back = AliasInfo("y", 42, "docs", origin="B")
    assert r.catalog(b"alias:y", back.to_json()).skipped == SKIP_ORIGIN
    stamped = _router().catalog(b"alias:z", AliasInfo("z", 42, "docs").to_json())
    assert stamped.out is not None and json.loads(stamped.out.value)["origin"] == "A"


def test_database_records_are_replicated_with_loop_prevention() -> None:
    from schemas.catalog import DatabaseInfo

    r = _router(collections=["docs"])
    d = r.catalog(b"db:sales", DatabaseInfo("sales", 7, origin="A").to_json())
    assert d.out is not None and d.out.key == b"db:sales" and d.collection is None
    assert r.catalog(b"db:sales", DatabaseInfo("sales", 7, origin="B").to_json()).skipped == SKIP_ORIGIN
    stamped = r.catalog(b"db:x", DatabaseInfo("x", 8).to_json())
    assert stamped.out is not None and json.loads(stamped.out.value)["origin"] == "A"
    # a collection of another database is keyed db/name, its alias alias:db/name
    other = _router().catalog(b"sales/docs", _info(name="docs", db_name="sales", origin="").to_json()).out
    assert other is not None and other.key == b"sales/docs"
    assert CollectionInfo.from_json(other.value or b"").qualified == "sales/docs"


def test_access_control_records_are_replicated_only_when_asked() -> None:
    from schemas.rbac import Grant, RbacUser

    user = RbacUser("alice", "$argon2id$hash", origin="A")
    skipped = _router().catalog(user.key.encode(), user.to_json())
    assert skipped.out is None and skipped.skipped == SKIP_FILTERED and skipped.collection is None
    r = _router(rbac=True)
    d = r.catalog(user.key.encode(), user.to_json())
    assert d.out is not None and d.out.key == b"user:alice" and d.out.value == user.to_json()
    grant = Grant("r", "Collection", "docs", "default", "Search")
    stamped = r.catalog(grant.key.encode(), grant.to_json())
    assert stamped.out is not None and json.loads(stamped.out.value)["origin"] == "A"
    back = Grant("r", "Collection", "docs", "default", "Search", origin="B")
    assert r.catalog(back.key.encode(), back.to_json()).skipped == SKIP_ORIGIN
    assert TaskSpec.from_dict(r.spec.to_dict(secrets=True)).rbac is True
