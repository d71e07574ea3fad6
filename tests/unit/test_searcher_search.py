"""Searcher pieces the search-surface integration tests found broken: filters inside a requested
partition, grouping, partial range selection, byte vectors read back from Delta, query pages."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from indexer.ranges import select_range
from schemas.filters import FilterField, FilterSchema, compile_filter
from schemas.vector_arrays import arrow_vectors
from searcher.query import query_rows
from searcher.requests import group_positions
from searcher.search import container_mask
from searcher.segment import Container

_SCHEMA = FilterSchema({"id": FilterField("id", "INT64"), "n": FilterField("n", "INT64")}, False)


def _container(ids, partition="p1", sealed=True) -> Container:
    n = len(ids)
    parts = partition if isinstance(partition, list) else [partition] * n
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "n": pa.array(ids, pa.int64()),
            "_seq": pa.array(np.arange(n), pa.int64()),
            "_offset": pa.array(np.arange(n), pa.int64()),
            "_partition": pa.array(parts, pa.string()),
        }
    )
    return Container(table, "id", sealed, 1, 0)


def test_filter_applies_inside_a_requested_sealed_partition():
    c = _container(list(range(10)))
    flt = compile_filter("n % 2 == 0", _SCHEMA)
    assert container_mask(c, c.alive, flt, ["p1"]).tolist() == [i % 2 == 0 for i in range(10)]
    assert not container_mask(c, c.alive, flt, ["p2"]).any()
    mixed = _container(list(range(4)), ["p1", "p2", "p1", "p2"], sealed=False)
    assert container_mask(mixed, mixed.alive, flt, ["p1"]).tolist() == [True, False, True, False]


def test_group_positions_follow_milvus_group_reduce():
    values = ["a", "a", "b", "a", "c", "b", "d", "c", "c"]
    pos, complete = group_positions(values, limit=2, offset=0, size=2, strict=True)
    assert pos == [0, 1, 2, 5] and complete  # a: 0, 1; b: 2, 5 (groups kept together)
    pos, complete = group_positions(values, limit=2, offset=1, size=3, strict=True)
    assert [values[p] for p in pos] == ["b", "b", "c", "c", "c"] and not complete  # b has 2 of 3
    pos, complete = group_positions(values, limit=2, offset=1, size=3, strict=False)
    assert complete
    pos, complete = group_positions(values, limit=9, offset=0, size=1, strict=True)
    assert pos == [0, 2, 4, 6] and not complete  # only 4 groups exist


@pytest.mark.parametrize("metric", ["L2", "IP"])
def test_range_selection_with_a_limit_matches_a_full_sort(metric):
    rng = np.random.default_rng(0)
    d = rng.integers(0, 20, 500).astype(np.float32)  # many ties
    labels = np.arange(500, dtype=np.int64)[::-1].copy()
    radius, rf = (25.0, 3.0) if metric == "L2" else (-1.0, 15.0)
    full_d, full_l = select_range(d, labels, metric, radius, rf, None)
    for limit in (1, 7, 100, 499, 1000):
        got_d, got_l = select_range(d, labels, metric, radius, rf, limit)
        assert got_d.tolist() == full_d[:limit].tolist() and got_l.tolist() == full_l[:limit].tolist()


@pytest.mark.parametrize(
    ("vtype", "dim", "width"), [("FLOAT16_VECTOR", 4, 8), ("BFLOAT16_VECTOR", 4, 8), ("BINARY_VECTOR", 16, 2)]
)
def test_byte_vectors_read_back_from_delta_as_plain_binary(vtype, dim, width):
    rng = np.random.default_rng(1)
    raw = [rng.integers(0, 256, width, dtype=np.uint8).tobytes() for _ in range(5)]
    fixed = arrow_vectors(pa.array(raw, pa.binary(width)), vtype, dim)
    for typ in (pa.binary(), pa.large_binary()):
        got = arrow_vectors(pa.chunked_array([pa.array(raw[:2], typ), pa.array(raw[2:], typ)]), vtype, dim)
        np.testing.assert_array_equal(got, fixed)


def test_limited_query_takes_the_smallest_keys_of_each_container():
    a = _container([9, 1, 7, 3, 5])
    b = _container([8, 2, 6, 4, 0], "p2")
    view = [(a, a.alive), (b, b.alive)]
    flt = compile_filter("n >= 2", _SCHEMA)
    table, _ = query_rows(view, "id", flt, None, None, ["n"], 3, 1, False)
    assert table.column("id").to_pylist() == [3, 4, 5]
    table, _ = query_rows(view, "id", None, None, None, ["n"], None, 0, False)
    assert sorted(table.column("id").to_pylist()) == list(range(10))
