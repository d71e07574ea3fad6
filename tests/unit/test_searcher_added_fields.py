"""A field added (``add_collection_field``) while a searcher reads sealed rows reads as null in
those rows too, whichever of the read and the catalog change finishes first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.collection import FieldSchema
from schemas.types import DataType
from schemas.wal import Op
from searcher import collection as collection_module
from searcher.collection import LoadedCollection
from tests.unit.test_compaction import Env


def _add_score_during(env: Env, coll: LoadedCollection, step: Callable[..., Any]) -> Callable[..., Any]:
    """``step``, after the catalog adds ``score`` (FLOAT, nullable) and the copy applies it: a
    step of a read that comes after the rows were conformed to the schema the read started with."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if coll.info.schema.field("score") is None:
            field = FieldSchema("score", DataType.FLOAT, nullable=True, field_id=200)
            env.info = replace(env.info, schema=env.info.schema.with_field(field))
            coll.update_info(env.info)
        return step(*args, **kwargs)

    return run


def _score_of_every_row(coll: LoadedCollection) -> list:
    out = []
    for c in coll.containers:
        out += c.take_columns(["id", "score"], pa.array(range(c.num_rows))).column("score").to_pylist()
    return out


def test_a_field_added_while_a_seal_is_read_reads_as_null_in_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path / "tables", shards=1)
    coll = LoadedCollection(env.info, env.store)
    coll.load()
    env.seal(0, (Op.INSERT, list(range(10)), None))
    monkeypatch.setattr(
        collection_module, "read_sealed", _add_score_during(env, coll, collection_module.read_sealed)
    )

    coll._prepare(0, -1, 0)

    (prepared,) = coll._prepared.values()
    assert all(c.has_column("score") for c in prepared.containers)
    coll.shards[0].applied = 0
    coll._swap(prepared)
    assert _score_of_every_row(coll) == [None] * 10


def test_a_field_added_while_a_collection_loads_reads_as_null_in_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path / "tables", shards=1)
    env.seal(0, (Op.INSERT, list(range(7)), None))
    coll = LoadedCollection(env.info, env.store)
    containers = collection_module.sealed_containers
    monkeypatch.setattr(collection_module, "sealed_containers", _add_score_during(env, coll, containers))

    coll.load()

    assert _score_of_every_row(coll) == [None] * 7
