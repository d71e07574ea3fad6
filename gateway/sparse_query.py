"""Search input for SPARSE_FLOAT_VECTOR fields: packed sparse rows, or raw text for BM25 fields.

pymilvus sends sparse query vectors as a ``SparseFloatVector`` placeholder (each value one row
of little-endian uint32 index + float32 value pairs) and full-text queries as a ``VarChar``
placeholder (UTF-8 text), which the BM25 function's analyzer turns into term frequencies (on a
field with multi-language analyzers, the one ``analyzer_name`` picks; ``default`` without it).
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2

from gateway.field_data import sparse_rows_from_bytes
from schemas.bm25 import term_frequencies
from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument, ValidationError
from schemas.functions import function_of
from schemas.multi_analyzer import query_analyzer
from schemas.sparse import SparseQueries

_PH = common_pb2.PlaceholderType


def sparse_queries(
    schema: CollectionSchema, f: FieldSchema, raw: bytes, analyzer_name: str | None = None
) -> SparseQueries:
    group = common_pb2.PlaceholderGroup.FromString(raw)
    if len(group.placeholders) != 1:
        raise InvalidArgument(f"expected one placeholder of search vectors, got {len(group.placeholders)}")
    ph = group.placeholders[0]
    values = list(ph.values)
    if not values:
        raise InvalidArgument(
            "nq (number of search vectors per search request) should be in range [1, 16384]"
        )
    fn = function_of(schema.functions, f.name)
    if analyzer_name is not None and (fn is None or ph.type != _PH.VarChar):
        raise InvalidArgument(
            f"analyzer_name applies to full-text search with text on a BM25 output field; field {f.name} "
            "is searched with vectors"
        )
    if ph.type == _PH.VarChar:
        if fn is None:
            raise InvalidArgument(
                f"field {f.name} is not the output of a BM25 function: search it with sparse vectors, not text"
            )
        src = schema.field(fn.input_field_names[0])
        assert src is not None
        try:
            texts = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"search text for field {f.name} is not UTF-8") from exc
        return SparseQueries.from_column(term_frequencies(query_analyzer(src, analyzer_name), texts))
    if ph.type == _PH.SparseFloatVector:
        if fn is not None:
            raise InvalidArgument(
                f"field {f.name} is the output of BM25 function {fn.name}: search it with text, not sparse vectors"
            )
        try:
            return SparseQueries.from_column(sparse_rows_from_bytes(f.name, values, len(values)))
        except ValidationError as exc:
            raise InvalidArgument(f"search vectors: {exc.message}") from None
    kind = _PH.Name(ph.type) if ph.type in _PH.values() else str(ph.type)
    raise InvalidArgument(
        f"field {f.name} is SPARSE_FLOAT_VECTOR: search vectors of type {kind} do not match"
    )
