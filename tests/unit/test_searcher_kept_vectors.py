"""A sealed container lets its vector column go when its index keeps the vectors exactly; reads
that need the vectors get them back from the index, bit for bit."""

from __future__ import annotations

import types

import numpy as np
import pyarrow as pa
import pytest

from indexer import VectorIndex
from schemas.collection import FieldSchema
from schemas.index_spec import IndexSpec
from schemas.types import DataType
from searcher.search import gather
from searcher.segment import Container

N, DIM = 3000, 16
X = np.random.default_rng(0).random((N, DIM), dtype=np.float32)


def _container(sealed: bool = True) -> Container:
    table = pa.table(
        {
            "id": pa.array(np.arange(N, dtype=np.int64) + 100),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM),
            "_seq": pa.array(np.arange(N, dtype=np.int64)),
            "_offset": pa.array(np.arange(N, dtype=np.int64)),
            "_partition": pa.array(["_default"] * N),
            "_ts": pa.array(np.arange(N, dtype=np.int64)),
        }
    )
    return Container(table, "id", sealed)


def _index(index_type: str, metric: str) -> VectorIndex:
    params = {"IVF_FLAT": {"nlist": 16}, "HNSW": {"M": 8, "efConstruction": 40}, "IVF_SQ8": {"nlist": 16}}
    return VectorIndex.build(
        IndexSpec.parse(index_type, metric, params.get(index_type, {}), DIM, "FLOAT_VECTOR"), X
    )


@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "HNSW"])
@pytest.mark.parametrize("metric", ["L2", "IP"])
def test_exact_index_keeps_the_vectors(index_type, metric) -> None:
    c, ix = _container(), _index(index_type, metric)
    want = c.table.select(["id", "vec"])
    assert c.keep_vectors_in("vec", ix)
    assert "vec" not in c.table.column_names and c.has_column("vec")
    rows = np.array([N - 1, 0, 17, 17, 1234])
    assert c.take_columns(["vec", "id"], rows).equals(want.select(["vec", "id"]).take(rows))
    assert c.take_columns(["vec"], rows).equals(want.select(["vec"]).take(rows))  # vectors alone
    pks, fields = gather([c, _container()], np.array([5, N + 5, 2]), ["id", "vec"])
    assert fields.equals(want.take(np.array([5, 5, 2])))
    schema = types.SimpleNamespace(field=lambda name: FieldSchema(name, DataType.FLOAT_VECTOR, dim=DIM))
    assert np.array_equal(c.vectors(schema, "vec"), X)  # an exact fallback (the index dropped)


@pytest.mark.parametrize(
    "index_type, metric", [("IVF_SQ8", "L2"), ("IVF_FLAT", "COSINE"), ("HNSW", "COSINE")]
)
def test_lossy_or_normalised_index_leaves_the_column(index_type, metric) -> None:
    c = _container()
    assert not c.keep_vectors_in("vec", _index(index_type, metric))
    assert "vec" in c.table.column_names


def test_growing_rows_keep_their_column() -> None:
    c = _container(sealed=False)
    assert not c.keep_vectors_in("vec", _index("FLAT", "L2"))
    assert "vec" in c.table.column_names
