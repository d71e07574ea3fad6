"""Sparse vectors and BM25, unit level: analyzers, the stored layout, scoring against references."""

from __future__ import annotations

import math
from collections import Counter

import deltalake
import numpy as np
import pyarrow as pa
import pytest
from pymilvus.grpc_gen import schema_pb2

from gateway.field_data import field_data_from_column, sparse_from_proto
from indexer.sparse import Bm25Stats, SparseIndex
from schemas.analyzer import build_analyzer, term_id
from schemas.bm25 import term_frequencies
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import SchemaError, ValidationError
from schemas.functions import FunctionSchema
from schemas.index_spec import IndexSpec, IndexSpecError
from schemas.sparse import SparseQueries, drop_small, flat_parts, rows_as_dicts, sparse_column
from schemas.types import SPARSE_ARROW, DataType
from schemas.validation import build_batch

D = DataType


# ------------------------------------------------------------------------------ analyzers


def test_builtin_analyzers() -> None:
    assert build_analyzer(None).tokens("Hello, World! hello-again 42") == [
        "hello",
        "world",
        "hello",
        "again",
        "42",
    ]
    assert build_analyzer({"type": "english"}).tokens("The foxes are running quickly") == [
        "fox",
        "run",
        "quick",
    ]
    assert build_analyzer({"type": "standard", "stop_words": ["hello"]}).tokens("Hello big world") == [
        "big",
        "world",
    ]
    zh = build_analyzer({"type": "chinese"}).tokens("我爱北京天安门，向量数据库！")
    assert "北京" in zh and "数据库" in zh and "，" not in zh and "！" not in zh


def test_custom_analyzer_and_json_params() -> None:
    a = build_analyzer(
        '{"tokenizer": "whitespace", "filter": ["lowercase", "asciifolding", {"type": "length", "max": 5}, '
        '"removepunct"]}'
    )
    assert a.tokens("Café LONGWORD short !!") == ["cafe", "short"]
    jieba_exact = build_analyzer(
        {"tokenizer": {"type": "jieba", "mode": "exact"}, "filter": ["cnalphanumonly"]}
    )
    assert jieba_exact.tokens("向量数据库") == ["向量", "数据库"]


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"type": "klingon"}, "analyzer type"),
        ({"tokenizer": "kuromoji"}, "tokenizer"),
        ({"tokenizer": {"type": "lindera", "dict_kind": "ko-dic"}}, "dict_kind"),
        ({"tokenizer": "standard", "filter": ["soundex"]}, "filter"),
        ({"tokenizer": "standard", "filter": [{"type": "stemmer", "language": "elvish"}]}, "stemmer"),
        ({"tokenizer": "standard", "extra": 1}, "unknown keys"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_analyzer_params_are_refused(params, needle) -> None:
    with pytest.raises(SchemaError, match=needle):
        build_analyzer(params)


# ------------------------------------------------------------------------------ layout


def test_sparse_inputs_round_trip_through_delta(tmp_path) -> None:
    col = sparse_column("sv", [{7: 0.5, 2: 1.5}, [(4294967294, -1.0)], {}, {"3": 2}])
    assert col.type == SPARSE_ARROW
    expected = [{2: 1.5, 7: 0.5}, {4294967294: -1.0}, {}, {3: 2.0}]
    assert rows_as_dicts(col) == expected
    deltalake.write_deltalake(str(tmp_path), pa.table({"sv": col}))
    back = deltalake.DeltaTable(str(tmp_path)).to_pyarrow_table().column("sv").combine_chunks()
    assert rows_as_dicts(back) == expected
    rows, idx, val = flat_parts(back.slice(1, 3))  # slices keep their offsets
    assert rows.tolist() == [0, 2] and idx.tolist() == [4294967294, 3]


@pytest.mark.parametrize(
    "rows, needle",
    [
        ([{-1: 1.0}], "outside"),
        ([{2**32 - 1: 1.0}], "outside"),
        ([[(1, 1.0), (1, 2.0)]], "twice"),
        ([{1: float("nan")}], "NaN"),
        ([None], "null"),
        ([[1.0, 2.0]], "not a sparse vector"),
    ],
)
def test_bad_sparse_rows_are_refused(rows, needle) -> None:
    with pytest.raises(ValidationError, match=needle):
        sparse_column("sv", rows)


def test_field_data_round_trip() -> None:
    col = sparse_column("sv", [{1: 0.25, 9: 2.0}, {}, {5: 1.0}])
    fd = field_data_from_column("sv", col, FieldSchema("sv", D.SPARSE_FLOAT_VECTOR))
    assert fd.type == D.SPARSE_FLOAT_VECTOR and len(fd.vectors.sparse_float_vector.contents) == 3
    back = sparse_from_proto("sv", fd.vectors, 3)
    assert rows_as_dicts(back) == rows_as_dicts(col)
    empty = field_data_from_column("sv", col.slice(0, 0), FieldSchema("sv", D.SPARSE_FLOAT_VECTOR))
    assert len(empty.vectors.sparse_float_vector.contents) == 0
    with pytest.raises(ValidationError, match="FLOAT_VECTOR|float_vector"):
        sparse_from_proto(
            "sv", schema_pb2.VectorField(dim=2, float_vector=schema_pb2.FloatArray(data=[1, 2])), 1
        )


# ------------------------------------------------------------------------------ schema, insert


def _bm25_schema() -> CollectionSchema:
    return validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.INT64, is_primary=True),
                FieldSchema("text", D.VARCHAR, max_length=200, enable_analyzer=True, nullable=True),
                FieldSchema("sparse", D.SPARSE_FLOAT_VECTOR),
            ),
            functions=(FunctionSchema("bm25", "BM25", ("text",), ("sparse",)),),
        )
    )


def test_bm25_output_is_computed_at_insert_and_never_given() -> None:
    schema = _bm25_schema()
    assert schema.field("sparse").is_function_output
    batch = build_batch(schema, {"id": [1, 2], "text": ["hello hello world", None]})
    assert rows_as_dicts(batch.column(2)) == [{term_id("hello"): 2.0, term_id("world"): 1.0}, {}]
    with pytest.raises(ValidationError, match="output of function 'bm25'"):
        build_batch(schema, {"id": [1], "text": ["x"], "sparse": [{1: 1.0}]})
    assert CollectionSchema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(
    "text_field, fn, needle",
    [
        (FieldSchema("text", D.VARCHAR, max_length=10), None, "enable_analyzer"),
        (
            FieldSchema(
                "text", D.VARCHAR, max_length=10, enable_analyzer=True, analyzer_params='{"type": "x"}'
            ),
            None,
            "analyzer type",
        ),
        (None, FunctionSchema("f", "TextEmbedding", ("text",), ("sparse",)), "not supported"),
        (None, FunctionSchema("f", "BM25", ("text",), ("sparse",), params={"k": "1"}), "no params"),
        (None, FunctionSchema("f", "BM25", ("text",), ("id",)), "SPARSE_FLOAT_VECTOR"),
    ],
)
def test_bad_functions_are_refused(text_field, fn, needle) -> None:
    text = text_field or FieldSchema("text", D.VARCHAR, max_length=10, enable_analyzer=True)
    fn = fn or FunctionSchema("f", "BM25", ("text",), ("sparse",))
    schema = CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            text,
            FieldSchema("sparse", D.SPARSE_FLOAT_VECTOR),
        ),
        functions=(fn,),
    )
    with pytest.raises(SchemaError, match=needle):
        validate_schema(schema)


# ------------------------------------------------------------------------------ index spec


def test_sparse_index_specs() -> None:
    spec = IndexSpec.parse("SPARSE_WAND", "IP", {"drop_ratio_build": 0.2}, 0, "SPARSE_FLOAT_VECTOR")
    assert (spec.index_type, spec.metric, spec.params["drop_ratio_build"]) == ("SPARSE_WAND", "IP", 0.2)
    bm = IndexSpec.parse("AUTOINDEX", "BM25", {}, 0, "SPARSE_FLOAT_VECTOR")
    assert (bm.index_type, bm.params["bm25_k1"], bm.params["bm25_b"]) == ("SPARSE_INVERTED_INDEX", 1.2, 0.75)
    for params, needle in [
        ({"drop_ratio_build": 1.0}, "drop_ratio_build"),
        ({"bm25_k1": 0.5}, "bm25_k1"),
        ({"nlist": 4}, "not supported"),
        ({"inverted_index_algo": "MAGIC"}, "inverted_index_algo"),
    ]:
        with pytest.raises(IndexSpecError, match=needle):
            IndexSpec.parse("SPARSE_INVERTED_INDEX", "BM25", params, 0, "SPARSE_FLOAT_VECTOR")
    with pytest.raises(IndexSpecError, match="metric L2"):
        IndexSpec.parse("SPARSE_INVERTED_INDEX", "L2", {}, 0, "SPARSE_FLOAT_VECTOR")


# ------------------------------------------------------------------------------ scoring


def test_sparse_ip_equals_dense_inner_product() -> None:
    rng = np.random.default_rng(3)
    dense = rng.random((200, 40)) * (rng.random((200, 40)) < 0.2)
    rows = [{int(j): float(dense[i, j]) for j in np.flatnonzero(dense[i])} for i in range(200)]
    index = SparseIndex(sparse_column("sv", rows), 200)
    q = rng.random(40) * (rng.random(40) < 0.3)
    query = SparseQueries.from_column(sparse_column("q", [{int(j): float(q[j]) for j in np.flatnonzero(q)}]))
    allowed = np.arange(200) % 2 == 0
    d, labels = index.search(query.items, 5, allowed)
    exact = dense.astype(np.float32) @ q.astype(np.float32)
    exact[~allowed] = -np.inf
    exact[exact == 0] = -np.inf
    best = np.argsort(-exact, kind="stable")[:5]
    assert labels[0].tolist() == best.tolist()
    np.testing.assert_allclose(d[0], exact[best], rtol=1e-5)


def test_bm25_matches_a_reference() -> None:
    docs = ["a b c", "a a d", "b e e e f", "g"]
    analyzer = build_analyzer(None)
    index = SparseIndex(term_frequencies(analyzer, docs), len(docs))
    alive = np.array([True, True, True, False])  # the last one was deleted
    query = SparseQueries.from_column(term_frequencies(analyzer, ["a e a"])).items[0]
    n = int(alive.sum())
    avgdl = index.live_length(alive) / n
    stats = Bm25Stats(n, avgdl, index.doc_freq(query[0], alive))
    rows, scores = index.scores(query, stats, k1=1.5, b=0.6)
    toks = [Counter(d.split()) for d in docs[:3]]
    qtf = Counter("a e a".split())
    ref = {}
    for i, tf in enumerate(toks):
        dl = sum(tf.values())
        s = 0.0
        for t, q in qtf.items():
            if t in tf:
                df = sum(t in c for c in toks)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += q * idf * tf[t] * 2.5 / (tf[t] + 1.5 * (1 - 0.6 + 0.6 * dl / avgdl))
        if s:
            ref[i] = s
    assert avgdl == pytest.approx(11 / 3)
    assert dict(zip(rows.tolist(), scores.tolist(), strict=True)) == pytest.approx(ref, rel=1e-5)


def test_drop_ratios() -> None:
    q = (np.array([1, 2, 3, 4]), np.array([0.1, 0.9, 0.5, 0.05]))
    assert drop_small(q, 0.5)[0].tolist() == [2, 3]
    assert drop_small(q, 0.0)[0].tolist() == [1, 2, 3, 4]
    index = SparseIndex(sparse_column("sv", [{1: 0.01, 2: 1.0}, {1: 0.5}]), 2, drop_ratio_build=0.34)
    rows, scores = index.scores((np.array([1]), np.array([1.0])))
    assert rows.tolist() == [1]  # the smallest third of the values left the index
    assert index.doc_len.tolist() == pytest.approx([1.01, 0.5])  # lengths count every value


# ------------------------------------------------------------------------------ TEXT_MATCH / PHRASE_MATCH


def _match_rows(expr: str, texts: list[str | None], analyzer: str = "") -> list[int]:
    from schemas.filters import FilterField, FilterSchema, compile_filter

    schema = FilterSchema.of([FilterField("t", "VARCHAR", None, True, analyzer), FilterField("u", "VARCHAR")])
    table = pa.table({"t": pa.array(texts, pa.string()), "u": pa.array(["x"] * len(texts))})
    return np.flatnonzero(compile_filter(expr, schema).evaluate(table)).tolist()


TEXTS = ["The quick brown fox", "a lazy dog sleeps", "quick dogs and a brown cat", None, "fox brown quick"]


def test_text_match_is_any_token() -> None:
    assert _match_rows('TEXT_MATCH(t, "fox dog")', TEXTS) == [0, 1, 4]
    assert _match_rows('text_match(t, "QUICK") and not text_match(t, "cat")', TEXTS) == [0, 4]
    assert _match_rows('TEXT_MATCH(t, "nothing here")', TEXTS) == []
    assert _match_rows("TEXT_MATCH(t, 'dogs')", TEXTS, '{"type": "english"}') == [1, 2]  # stemmed


def test_phrase_match_keeps_order_within_slop() -> None:
    assert _match_rows('PHRASE_MATCH(t, "quick brown")', TEXTS) == [0]
    assert _match_rows('PHRASE_MATCH(t, "quick brown", 0)', TEXTS) == [0]
    assert _match_rows('PHRASE_MATCH(t, "quick brown", 3)', TEXTS) == [0, 2]
    assert _match_rows('PHRASE_MATCH(t, "brown quick", 0)', TEXTS) == [4]
    assert _match_rows('PHRASE_MATCH(t, "quick brown fox", 0)', TEXTS) == [0]


def _phrase_reference(words: list[str], phrase: list[str], slop: int) -> bool:
    """Some occurrence of each phrase word, in order, with the gaps between them summing to <= slop."""

    def from_(i: int, at: int, used: int) -> bool:
        if i == len(phrase):
            return True
        return any(
            w == phrase[i] and used + p - at - 1 <= slop and from_(i + 1, p, used + p - at - 1)
            for p, w in enumerate(words)
            if p > at
        )

    return any(w == phrase[0] and from_(1, p, 0) for p, w in enumerate(words))


def test_phrase_match_agrees_with_a_plain_reference() -> None:
    rng = np.random.default_rng(7)
    vocab = ["a", "b", "c", "d"]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 9)))) for _ in range(300)]
    for _ in range(40):
        phrase = list(rng.choice(vocab, size=int(rng.integers(1, 4))))
        slop = int(rng.integers(0, 4))
        want = [i for i, t in enumerate(texts) if t and _phrase_reference(t.split(), phrase, slop)]
        assert _match_rows(f'PHRASE_MATCH(t, "{" ".join(phrase)}", {slop})', texts) == want


@pytest.mark.parametrize(
    "expr, needle",
    [
        ('TEXT_MATCH(u, "x")', "enable_match"),
        ("TEXT_MATCH(t, 3)", "string"),
        ('TEXT_MATCH(t, "a", 1)', "2 arguments"),
        ('PHRASE_MATCH(t, "a", -1)', "slop"),
    ],
)
def test_bad_text_match_is_refused(expr, needle) -> None:
    from schemas.filters import FilterError

    with pytest.raises(FilterError, match=needle):
        _match_rows(expr, TEXTS)


def test_sparse_range_bounds() -> None:
    index = SparseIndex(sparse_column("sv", [{1: 1.0}, {1: 2.0}, {1: 3.0}, {2: 9.0}]), 4)
    q = [(np.array([1]), np.array([1.0]))]
    d, labels = index.search(q, 10, None, bounds=(1.0, 2.0))
    assert labels[0][labels[0] >= 0].tolist() == [1]  # (1, 2]: only the score 2
    d, labels = index.search(q, 10, None, bounds=(1.5, None))
    assert labels[0][labels[0] >= 0].tolist() == [2, 1]


def test_a_nullable_sparse_field_keeps_null_rows_through_ingest_output_and_search() -> None:
    col = sparse_column("sv", [{1: 0.5, 4: 1.0}, None, {4: 2.0}, None], nullable=True)
    assert col.null_count == 2 and col.is_valid().to_pylist() == [True, False, True, False]
    assert sparse_column("sv", col, nullable=True).null_count == 2  # stored rows come back as they are
    with pytest.raises(ValidationError, match="not nullable, but row 1 is null"):
        sparse_column("sv", col)
    # out to pymilvus: valid_data per row, vectors for the valid rows only; and back
    fd = field_data_from_column("sv", col, FieldSchema("sv", D.SPARSE_FLOAT_VECTOR, nullable=True))
    assert list(fd.valid_data) == [True, False, True, False]
    assert len(fd.vectors.sparse_float_vector.contents) == 2
    back = sparse_from_proto("sv", fd.vectors, 4, fd.valid_data)
    assert back.is_valid().to_pylist() == [True, False, True, False]
    assert rows_as_dicts(back.filter(back.is_valid())) == [{1: 0.5, 4: 1.0}, {4: 2.0}]
    with pytest.raises(ValidationError, match="valid_data has 3 entries for 4 rows"):
        sparse_from_proto("sv", fd.vectors, 4, [True, False, True])
    # a null row has no entries: it is never a search result
    _, labels = SparseIndex(col, 4).search([(np.array([1, 4]), np.array([1.0, 1.0]))], 4, None)
    assert sorted(int(i) for i in labels[0] if i >= 0) == [0, 2]
    schema = validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.INT64, is_primary=True),
                FieldSchema("sv", D.SPARSE_FLOAT_VECTOR, nullable=True),
            )
        )
    )
    batch = build_batch(schema, {"id": [1, 2], "sv": [None, {3: 1.0}]})
    assert batch.column("sv").is_valid().to_pylist() == [False, True]
