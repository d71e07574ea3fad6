"""Scalar and JSON-path index pruning gives exactly the rows of the unindexed evaluator."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument
from schemas.filters import FilterField, FilterSchema, compile_filter
from schemas.scalar_index import ScalarSource, check_scalar_index, default_index_name, parse_json_path
from schemas.types import DataType
from searcher.scalar_index import SegmentPostings, candidates, indexed_mask

SCHEMA = FilterSchema.of(
    [
        FilterField("id", "INT64"),
        FilterField("age", "INT32", nullable=True),
        FilterField("price", "DOUBLE"),
        FilterField("name", "VARCHAR", nullable=True),
        FilterField("flag", "BOOL"),
        FilterField("meta", "JSON", nullable=True),
    ],
    dynamic=True,
)
SOURCES = frozenset(
    {
        ScalarSource("age", None, "num"),
        ScalarSource("price", None, "num"),
        ScalarSource("name", None, "str"),
        ScalarSource("flag", None, "bool"),
        ScalarSource("meta", ("a",), "num"),
        ScalarSource("meta", ("s",), "str"),
        ScalarSource("meta", ("b",), "bool"),
        ScalarSource("meta", ("o", "p"), "num"),
        ScalarSource("$meta", ("color",), "str"),
    }
)


def _doc(rng: random.Random) -> object:
    choice = rng.random()
    if choice < 0.05:
        return None
    if choice < 0.1:
        return rng.choice([3, "x", [1, 2], {}])
    doc = {
        "a": rng.choice([rng.randint(-5, 5), rng.uniform(-5, 5), str(rng.randint(0, 3)), True, None, [1]]),
        "s": rng.choice(["red", "blue", "green", 3, None]),
        "b": rng.choice([True, False, 1, "true"]),
    }
    if rng.random() < 0.5:
        doc["o"] = {"p": rng.randint(0, 9)}
    return doc


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = random.Random(7)
    n = 2000
    docs = [_doc(rng) for _ in range(n)]
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "age": pa.array(
                [None if rng.random() < 0.1 else rng.randint(0, 90) for _ in range(n)], pa.int32()
            ),
            "price": pa.array([rng.uniform(0, 100) for _ in range(n)], pa.float64()),
            "name": pa.array([None if rng.random() < 0.1 else rng.choice("abcde") * 2 for _ in range(n)]),
            "flag": pa.array([rng.random() < 0.3 for _ in range(n)]),
            "meta": pa.array([None if d is None else json.dumps(d) for d in docs], pa.string()),
            "$meta": pa.array([json.dumps({"color": rng.choice(["red", "blue", 1])}) for _ in range(n)]),
        }
    )


EXPRS = [
    "age > 30",
    "age == 40 or age in [1, 2, 3]",
    "age >= 10 and age <= 20 and price < 50",
    "price > 99.5",
    'name == "aa"',
    'name in ["bb", "cc"] and flag',
    "flag == true",
    'meta["a"] > 1',
    'meta["a"] == 2',
    'meta["a"] in [1, 2, -3]',
    'meta["a"] < 0 and meta["s"] == "red"',
    'meta["s"] >= "green"',
    'meta["b"]',
    'meta["b"] == true and age > 50',
    'meta["o"]["p"] == 4 or meta["o"]["p"] == 5',
    'color == "red"',
    'color == "red" and not (age > 10)',
    'meta["a"] != 2',
    'meta["a"] > 1.5 and meta["a"] < 4',
    "age > 30.5",
    'meta["a"] == "1"',
    'not meta["a"] > 1',
]


@pytest.mark.parametrize("expr", EXPRS)
def test_indexed_mask_equals_unindexed(table: pa.Table, expr: str) -> None:
    flt = compile_filter(expr, SCHEMA)
    alive = np.ones(table.num_rows, bool)
    alive[::7] = False
    want = alive & flt.evaluate(table)
    post = SegmentPostings()
    got = indexed_mask(flt, table, alive, SOURCES, post)
    assert np.array_equal(got, want)
    found = candidates(flt.root, table, SOURCES, post)
    if found is not None:  # a superset always; exactly the rows when it says so
        rows, exact = found
        full = np.zeros(table.num_rows, bool)
        full[rows] = True
        evaluated = flt.evaluate(table)
        assert not (evaluated & ~full).any()
        if exact:
            assert np.array_equal(full, evaluated), expr


def test_pruning_is_used_for_indexed_conjuncts(table: pa.Table) -> None:
    post = SegmentPostings()
    flt = compile_filter('meta["a"] > 4 and color == "red"', SCHEMA)
    rows, exact = candidates(flt.root, table, SOURCES, post)
    assert exact and 0 < len(rows) < table.num_rows / 5
    _, exact = candidates(compile_filter('meta["a"] > 4 and price < 3', SCHEMA).root, table, SOURCES, post)
    assert exact  # price is indexed too
    _, exact = candidates(compile_filter('meta["a"] > 4 and id < 3', SCHEMA).root, table, SOURCES, post)
    assert not exact
    assert candidates(compile_filter('meta["a"] != 2', SCHEMA).root, table, SOURCES, post) is None
    assert candidates(compile_filter('meta["zz"] > 2', SCHEMA).root, table, SOURCES, post) is None


def test_json_path_parsing_and_checks() -> None:
    assert parse_json_path("meta['a'][0][\"b\"]", "meta") == ("a", 0, "b")
    assert parse_json_path("meta", "meta") == ()
    with pytest.raises(InvalidArgument):
        parse_json_path("meta.a", "meta")
    schema = CollectionSchema(
        [
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("meta", DataType.JSON),
            FieldSchema("f", DataType.FLOAT),
        ],
        enable_dynamic_field=True,
    )
    with pytest.raises(InvalidArgument, match="json index must specify cast type"):
        check_scalar_index(schema, "meta", "INVERTED", {})
    assert check_scalar_index(schema, "meta", "INVERTED", {"json_cast_type": "BOOL"})["json_path"] == "meta"
    with pytest.raises(InvalidArgument, match="json_cast_type"):
        check_scalar_index(schema, "meta", "INVERTED", {"json_path": "meta['a']", "json_cast_type": "INT9"})
    with pytest.raises(InvalidArgument, match="bitmap index are only supported"):
        check_scalar_index(schema, "f", "BITMAP", {})
    with pytest.raises(InvalidArgument, match="json index must specify cast type"):
        check_scalar_index(schema, "nokey", "INVERTED", {})
    with pytest.raises(InvalidArgument, match=r"actual=invalid index type: 12-s"):
        check_scalar_index(schema, "f", "12-S", {}, "12-s")
    assert default_index_name(schema, "meta", "meta['a'][0]") == "meta/a/0"
    assert default_index_name(schema, "nokey", "nokey['a']") == "$meta/nokey/a"
    dyn = {"json_path": "nokey['a']", "json_cast_type": "double"}
    assert check_scalar_index(schema, "nokey", "INVERTED", dyn) == dyn
