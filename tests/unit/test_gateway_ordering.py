"""Ordering keys (``gateway/ordering.py``): parsing and the order they give, against sorted()."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from gateway.ordering import order_indices, parse_order
from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument
from schemas.types import DataType

SCHEMA = CollectionSchema(
    fields=(
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
        FieldSchema("price", DataType.DOUBLE, nullable=True),
        FieldSchema("name", DataType.VARCHAR, max_length=8),
        FieldSchema("meta", DataType.JSON),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4),
    ),
    enable_dynamic_field=True,
)


def test_parse_keys() -> None:
    keys = parse_order(SCHEMA, 'price:desc, name, meta["a"]["b"]:ASC, views:desc, meta["l"][1]')
    assert [(k.column, k.path, k.descending) for k in keys] == [
        ("price", (), True),
        ("name", (), False),
        ("meta", ("a", "b"), False),
        ("$meta", ("views",), True),
        ("meta", ("l", 1), False),
    ]
    assert parse_order(SCHEMA, "") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("v:asc", "cannot order by FLOAT_VECTOR"),
        ("tags", "cannot order by ARRAY"),
        ("meta", "needs a path"),
        ("price:up", "asc or desc"),
        ('price["x"]', "not JSON"),
        ("a b", "not a field name"),
    ],
)
def test_refused_keys(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_order(SCHEMA, spec)


def test_order_matches_a_stable_sort_with_nulls_last() -> None:
    price = [3.0, None, 1.0, 3.0, 2.0, None]
    name = ["b", "a", "c", "a", "b", "c"]
    meta = [orjson.dumps(m).decode() for m in ({"a": 2}, {}, {"a": 1}, {"a": 2.5}, {"b": 1}, {"a": 0})]
    table = pa.table({"price": pa.array(price), "name": name, "meta": meta})

    got = order_indices(table, parse_order(SCHEMA, "price:desc,name:asc")).tolist()
    rows = list(range(6))
    present = sorted((r for r in rows if price[r] is not None), key=lambda r: (-price[r], name[r], r))
    assert got == present + [r for r in rows if price[r] is None]

    got = order_indices(table, parse_order(SCHEMA, 'meta["a"]')).tolist()
    a = [orjson.loads(m).get("a") for m in meta]
    assert got == sorted((r for r in rows if a[r] is not None), key=lambda r: (a[r], r)) + [
        r for r in rows if a[r] is None
    ]


def test_json_path_mixing_numbers_and_strings_is_refused() -> None:
    table = pa.table({"meta": ['{"a": 1}', '{"a": "x"}']})
    with pytest.raises(InvalidArgument, match="both numbers and strings"):
        order_indices(table, parse_order(SCHEMA, 'meta["a"]'))
