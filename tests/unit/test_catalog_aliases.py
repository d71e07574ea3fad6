"""Aliases and renames in the catalog: how records change what a name resolves to."""

from __future__ import annotations

import pytest

from schemas.catalog import RENAMED, AliasInfo, CollectionInfo, decode_record, record_key
from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import (
    AliasExists,
    AliasInUse,
    AliasNameConflict,
    AliasNotFound,
    CollectionExists,
    CollectionNotFound,
    InvalidArgument,
)
from schemas.types import DataType
from tests.memory import memory_walvus
from walvus.api import Walvus
from walvus.catalog import Catalog


def schema() -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("vec", DataType.FLOAT_VECTOR, dim=2),
        )
    )


@pytest.fixture
def w() -> Walvus:
    w = memory_walvus()
    w.create_collection("a", schema())
    w.create_collection("b", schema())
    return w


def test_alias_resolves_and_switches_in_one_record(w: Walvus) -> None:
    a, b = w.catalog.require("a"), w.catalog.require("b")
    w.aliases.create("a", "live")
    assert w.catalog.require("live") is a
    assert w.catalog.get_collection("live") is None  # not a collection of its own
    assert w.catalog.aliases(a.collection_id) == ["live"]
    before = len(w.catalog.events)  # type: ignore[attr-defined]
    w.aliases.alter("b", "live")
    assert len(w.catalog.events) == before + 1  # type: ignore[attr-defined]
    assert w.catalog.require("live") is b
    assert w.catalog.aliases(a.collection_id) == [] and w.catalog.aliases(b.collection_id) == ["live"]
    w.aliases.drop("live")
    assert w.catalog.get("live") is None and w.catalog.aliases() == []
    w.aliases.drop("live")  # Milvus: dropping a missing alias succeeds


def test_alias_errors_change_nothing(w: Walvus) -> None:
    w.aliases.create("a", "live")
    w.aliases.create("a", "live")  # the same alias for the same collection: a no-op
    with pytest.raises(
        AliasExists,
        match=r"live is alias to another collection: a: alias already exist\[database=default\]\[alias=live\]",
    ) as e:
        w.aliases.create("b", "live")
    assert e.value.code == 1602
    with pytest.raises(AliasNameConflict, match=r"alias and collection name conflict") as c:
        w.aliases.create("a", "b")
    assert c.value.code == 1601
    with pytest.raises(AliasNameConflict, match="conflicts with an existing alias"):
        w.create_collection("live", schema())
    with pytest.raises(AliasNotFound, match=r"alias not found\[database=default\]\[alias=other\]") as n:
        w.aliases.alter("b", "other")
    assert n.value.code == 1600
    with pytest.raises(CollectionNotFound):
        w.aliases.create("missing", "x")
    with pytest.raises(AliasNameConflict, match="is an alias, not a collection"):
        w.aliases.create("live", "x")
    with pytest.raises(
        InvalidArgument, match="Invalid collection alias: 1x. the first character of a collection alias"
    ):
        w.aliases.create("a", "1x")
    with pytest.raises(
        AliasNameConflict, match=r"alias and collection name conflict\[database=default\]\[alias=b\]"
    ):
        w.aliases.alter("a", "b")
    with pytest.raises(AliasInUse, match="cannot drop the collection via alias = live") as via:
        w.drop_collection("live")
    assert via.value.code == 65535
    with pytest.raises(AliasInUse, match=r"has associated aliases \['live'\]"):
        w.drop_collection("a")
    assert w.catalog.require("live").name == "a" and w.catalog.get("b") is not None


def test_rename_moves_the_name_and_keeps_id_state_and_aliases(w: Walvus) -> None:
    a = w.catalog.require("a")
    w.aliases.create("a", "live")
    w.rename_collection("a", "c")
    c = w.catalog.require("c")
    assert c.collection_id == a.collection_id and c.schema == a.schema and c.name == "c"
    assert w.catalog.get("a") is None
    assert w.catalog.by_id(a.collection_id) is c
    assert w.catalog.require("live") is c  # aliases point at the id
    assert sorted(x.name for x in w.catalog.collections()) == ["b", "c"]
    w.create_collection("a", schema())  # the old name is free again
    assert w.catalog.require("a").collection_id != a.collection_id
    with pytest.raises(InvalidArgument, match="duplicated new collection name default:b"):
        w.rename_collection("c", "b")
    with pytest.raises(InvalidArgument, match="duplicated new collection name default:live"):
        w.rename_collection("c", "live")
    with pytest.raises(InvalidArgument, match="unsupported use an alias to rename collection"):
        w.rename_collection("live", "d")
    with pytest.raises(CollectionNotFound):
        w.rename_collection("missing", "d")
    with pytest.raises(CollectionExists):
        w.create_collection("c", schema())


def test_replayed_records_rebuild_the_same_view() -> None:
    """What a restarted process sees: the Kafka catalog's decoding of the same records in order."""
    w = memory_walvus()
    w.create_collection("a", schema())
    w.create_collection("b", schema())
    w.aliases.create("a", "live")
    w.rename_collection("a", "c")
    w.aliases.alter("b", "live")
    w.aliases.create("c", "old")
    w.aliases.drop("old")
    replay = Catalog(kafka=None, namespace="t")  # type: ignore[arg-type]
    heard: list[CollectionInfo] = []
    replay.add_listener(heard.append)
    for r in w.catalog.events:  # type: ignore[attr-defined]
        replay._apply(record_key(r).encode(), r.to_json())
    assert [c.name for c in replay.collections()] == ["b", "c"]
    assert replay.require("live").name == "b" and replay.alias("old") is None
    assert replay.get("a") is None
    # the renamed record of the old name never reaches listeners (the searcher would drop the collection)
    assert all(i.state != RENAMED for i in heard)
    marker = next(r for r in w.catalog.events if isinstance(r, CollectionInfo) and r.state == RENAMED)  # type: ignore[attr-defined]
    assert record_key(marker) == "a"
    alias = next(r for r in w.catalog.events if isinstance(r, AliasInfo))  # type: ignore[attr-defined]
    assert record_key(alias) == "alias:live" and decode_record("alias:live", alias.to_json()) == alias


def test_databases_keep_names_apart_and_replay() -> None:
    from schemas.exceptions import DatabaseNotFound
    from walvus.databases import using_db

    w = memory_walvus()
    home = w.create_collection("docs", schema())
    w.databases.create("sales", {"k": "v"})
    with using_db("sales"):
        sales = w.create_collection("docs", schema())
        w.aliases.create("docs", "cur")
        assert w.catalog.require("cur") is sales and w.catalog.require("docs") is sales
        assert [c.name for c in w.catalog.collections(db_name="sales")] == ["docs"]
    assert record_key(home) == "docs" and record_key(sales) == "sales/docs"  # default keeps bare keys
    assert w.catalog.require("docs") is home and w.catalog.alias("cur") is None
    with pytest.raises(DatabaseNotFound), using_db("nowhere"):
        w.create_collection("x", schema())
    with pytest.raises(InvalidArgument, match="not empty"):
        w.databases.drop("sales")
    replay = Catalog(kafka=None, namespace="t")  # type: ignore[arg-type]
    for r in w.catalog.events:  # type: ignore[attr-defined]
        replay._apply(record_key(r).encode(), r.to_json())
    assert [d.name for d in replay.databases()] == ["default", "sales"]
    assert replay.database("sales").properties == {"k": "v"}  # type: ignore[union-attr]
    with using_db("sales"):
        assert replay.require("cur").collection_id == sales.collection_id
    assert replay.require("docs").collection_id == home.collection_id
