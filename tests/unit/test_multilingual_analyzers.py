"""Multilingual full text, unit level: lindera, ICU, language_identifier, multi_analyzer_params."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest

from gateway.schema_convert import field_from_proto, field_to_proto
from schemas.analyzer import build_analyzer, term_id
from schemas.bm25 import term_frequencies
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import InvalidArgument, SchemaError
from schemas.functions import FunctionSchema
from schemas.multi_analyzer import build_multi_analyzer, query_analyzer
from schemas.sparse import rows_as_dicts
from schemas.types import DataType
from schemas.validation import build_batch

D = DataType
JAPANESE = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}, "filter": ["removepunct"]}
ANALYZERS = {"Japanese": JAPANESE, "English": {"type": "english"}, "default": {"tokenizer": "icu"}}


# ------------------------------------------------------------------------------ tokenizers


def test_lindera_ipadic_splits_japanese_into_words() -> None:
    assert build_analyzer(JAPANESE).tokens("千と千尋の神隠し") == ["千", "と", "千尋", "の", "神隠し"]
    bare = build_analyzer({"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}})
    assert bare.tokens("君の名は。") == [
        "君",
        "の",
        "名",
        "は",
        "。",
    ]  # punctuation stays without removepunct
    assert build_analyzer(JAPANESE).tokens("君の名は。") == ["君", "の", "名", "は"]


def test_icu_keeps_spaces_and_punctuation_as_tokens() -> None:
    # Milvus's documented example for its icu tokenizer
    assert build_analyzer({"tokenizer": "icu"}).tokens("Привет! Как дела?") == [
        "Привет",
        "!",
        " ",
        "Как",
        " ",
        "дела",
        "?",
    ]
    icu = build_analyzer({"tokenizer": "icu", "filter": ["lowercase", "removepunct"]})
    assert icu.tokens("Привет! Как дела?") == ["привет", "как", "дела"]
    assert icu.tokens("千と千尋の神隠し") == ["千", "と", "千尋", "の", "神隠し"]


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"tokenizer": {"type": "lindera", "dict_kind": "ko-dic"}}, "dict_kind 'ko-dic'"),
        ({"tokenizer": {"type": "lindera", "dict_kind": "ipadic", "filter": []}}, "dict_kind only"),
        ({"tokenizer": {"type": "icu", "locale": "ja"}}, "not supported"),
        ({"tokenizer": {"type": "language_identifier", "analyzers": {"English": {}}}}, '"default"'),
        (
            {"tokenizer": {"type": "language_identifier", "identifier": "cld3", "analyzers": ANALYZERS}},
            "identifier must be one of whatlang, lingua",
        ),
        (
            {
                "tokenizer": {"type": "language_identifier", "analyzers": ANALYZERS},
                "filter": ["lowercase"],
            },
            "takes no filter",
        ),
        (
            {
                "tokenizer": {
                    "type": "language_identifier",
                    "analyzers": ANALYZERS,
                    "mapping": {"Mandarin": "Chinese"},
                }
            },
            "not defined",
        ),
        (
            {"tokenizer": {"type": "language_identifier", "analyzers": {"default": {"type": "klingon"}}}},
            "analyzer 'default'",
        ),
    ],
)
def test_bad_multilingual_params_are_refused(params, needle) -> None:
    with pytest.raises(SchemaError, match=needle):
        build_analyzer(params)


def test_language_identifier_routes_each_text_by_its_detected_language() -> None:
    li = build_analyzer({"tokenizer": {"type": "language_identifier", "analyzers": ANALYZERS}})
    assert li.tokens("千と千尋の神隠し") == ["千", "と", "千尋", "の", "神隠し"]  # Japanese: lindera
    assert li.tokens("The Lord of the Rings") == ["lord", "ring"]  # English: stemmed, stop words out
    assert li.tokens("12 34") == ["12", " ", "34"]  # nothing detected: default (icu)
    assert li.tokens_of(["the Rings", None, "神隠し"]) == [["ring"], [], ["神隠し"]]
    # whatlang says "Mandarin"; mapping renames it to an analyzer name
    zh = build_analyzer(
        {
            "tokenizer": {
                "type": "language_identifier",
                "identifier": "whatlang",
                "analyzers": {"default": {"tokenizer": "standard"}, "zh": {"tokenizer": "jieba"}},
                "mapping": {"Mandarin": "zh"},
            }
        }
    )
    assert zh.tokens("人工智能正在改变技术领域") == build_analyzer({"tokenizer": "jieba"}).tokens(
        "人工智能正在改变技术领域"
    )


def test_lingua_names_languages_in_english() -> None:
    li = build_analyzer(
        {
            "tokenizer": {
                "type": "language_identifier",
                "identifier": "lingua",
                "analyzers": {"default": {"tokenizer": "standard"}, "Chinese": {"type": "chinese"}},
            }
        }
    )
    assert li.tokens("人工智能正在改变技术领域") == build_analyzer({"type": "chinese"}).tokens(
        "人工智能正在改变技术领域"
    )
    assert li.tokens("Hello World") == ["Hello", "World"]  # default: a bare standard tokenizer


# ------------------------------------------------------------------------------ per-row routing


def test_multi_analyzer_routes_rows_by_name_alias_and_default() -> None:
    multi = build_multi_analyzer(
        json.dumps({"by_field": "lang", "analyzers": ANALYZERS, "alias": {"jp": "Japanese"}})
    )
    texts = ["The Lord of the Rings", "千と千尋の神隠し", "君の名は。", "Spirited Away", None, "the Rings"]
    names = pa.chunked_array([["English", "jp"], ["Japanese", None, "English", "Klingon"]])
    got = multi.tokens_of(texts, names)
    assert got == [
        ["lord", "ring"],
        ["千", "と", "千尋", "の", "神隠し"],
        ["君", "の", "名", "は"],
        ["Spirited", " ", "Away"],  # null name: default (icu)
        [],
        ["the", " ", "Rings"],  # unknown name: default
    ]
    # the same as analyzing row by row
    for text, name, tokens in zip(texts, names.to_pylist(), got, strict=True):
        assert tokens == (multi.pick(name).tokens(text) if text else [])
    assert multi.tokens_of(["a b"], pa.array([None], pa.string())) == [["a", " ", "b"]]


def _multi_schema(**text_kw) -> CollectionSchema:
    params = {"by_field": "lang", "analyzers": ANALYZERS, "alias": {"jp": "Japanese"}}
    kw = {"enable_analyzer": True, "multi_analyzer_params": json.dumps(params), **text_kw}
    return CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("lang", D.VARCHAR, max_length=16, nullable=True),
            FieldSchema("text", D.VARCHAR, max_length=200, **kw),
            FieldSchema("sparse", D.SPARSE_FLOAT_VECTOR),
        ),
        functions=(FunctionSchema("bm25", "BM25", ("text",), ("sparse",)),),
    )


def test_insert_tokenises_each_row_with_its_analyzer() -> None:
    schema = validate_schema(_multi_schema())
    texts = ["The Lord of the Rings", "千と千尋の神隠し", "Spirited Away"]
    batch = build_batch(schema, {"id": [1, 2, 3], "lang": ["English", "jp", None], "text": texts})
    got = rows_as_dicts(batch.column("sparse"))
    expected = [
        {term_id(t): float(c) for t, c in Counter(build_analyzer(params).tokens(text)).items()}
        for text, params in zip(texts, (ANALYZERS["English"], JAPANESE, ANALYZERS["default"]), strict=True)
    ]
    assert got == expected


def test_query_analyzer_picks_by_analyzer_name() -> None:
    schema = validate_schema(_multi_schema())
    text = schema.field("text")
    assert query_analyzer(text, "Japanese").tokens("神隠し") == ["神隠し"]
    assert query_analyzer(text, "jp").tokens("神隠し") == ["神隠し"]
    assert query_analyzer(text, None).tokens("the Rings") == ["the", " ", "Rings"]  # default
    q = term_frequencies(query_analyzer(text, "English"), ["the Rings"])
    assert rows_as_dicts(q) == [{term_id("ring"): 1.0}]
    with pytest.raises(InvalidArgument, match="has one analyzer"):
        query_analyzer(schema.field("lang"), "English")


@pytest.mark.parametrize(
    "change, needle",
    [
        (
            {"multi_analyzer_params": json.dumps({"by_field": "nope", "analyzers": ANALYZERS})},
            "by_field 'nope'",
        ),
        ({"multi_analyzer_params": json.dumps({"by_field": "id", "analyzers": ANALYZERS})}, "VARCHAR"),
        ({"multi_analyzer_params": json.dumps({"by_field": "text", "analyzers": ANALYZERS})}, "another"),
        ({"multi_analyzer_params": json.dumps({"by_field": "lang", "analyzers": {"x": {}}})}, '"default"'),
        (
            {
                "multi_analyzer_params": json.dumps(
                    {"by_field": "lang", "analyzers": ANALYZERS, "alias": {"a": "b"}}
                )
            },
            "not defined",
        ),
        (
            {
                "multi_analyzer_params": json.dumps(
                    {"by_field": "lang", "analyzers": {"default": {"tokenizer": "kuromoji"}}}
                )
            },
            "analyzer 'default'",
        ),
        (
            {"multi_analyzer_params": json.dumps({"by_field": "lang", "analyzers": ANALYZERS, "x": 1})},
            "unknown keys",
        ),
        ({"enable_match": True}, "enable_match"),
        ({"analyzer_params": '{"type": "english"}'}, "not both"),
        ({"enable_analyzer": False}, "enable_analyzer"),
    ],
)
def test_bad_multi_analyzer_schemas_are_refused(change, needle) -> None:
    with pytest.raises(SchemaError, match=needle):
        validate_schema(_multi_schema(**change))


def test_multi_analyzer_params_survive_storage_and_describe() -> None:
    schema = validate_schema(_multi_schema())
    assert CollectionSchema.from_dict(schema.to_dict()) == schema
    text = schema.field("text")
    pb = field_to_proto(text)
    assert {kv.key: kv.value for kv in pb.type_params}["multi_analyzer_params"] == text.multi_analyzer_params
    assert field_from_proto(pb).multi_analyzer_params == text.multi_analyzer_params
    with pytest.raises(SchemaError, match="cannot be dropped"):
        schema.without_field("lang")
