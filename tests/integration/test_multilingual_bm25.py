"""Multilingual full-text search through pymilvus, on a real broker and real walvus processes.

A multi-analyzer collection (each row analyzed by the analyzer its ``language`` field names) and a
language-identifier collection (each text analyzed by the analyzer of its detected language).
Scores are checked against BM25 (Milvus's formula) computed here over the same rows, with each
row tokenised by the analyzer it should get.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from schemas.analyzer import build_analyzer
from tests.procs import Deployment

pytestmark = pytest.mark.integration

JAPANESE = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}, "filter": ["removepunct"]}
ANALYZERS = {"Japanese": JAPANESE, "English": {"type": "english"}, "default": {"tokenizer": "icu"}}
ROWS = [  # id, language, text
    (1, "English", "The Lord of the Rings"),
    (2, "English", "Spirited Away into the rings of Saturn"),
    (3, "Japanese", "千と千尋の神隠し"),
    (4, "jp", "君の名は。"),  # alias of Japanese
    (5, None, "神隠し and rings"),  # no language: default (icu)
    (6, "Klingon", "千尋 the rings"),  # unknown: default
    (7, "Japanese", "千尋の神隠しの物語"),
]


@pytest.fixture(scope="module")
def dep(kafka_bootstrap, tmp_path_factory):
    d = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("multilingual"))
    d.start("streams", "indexer", "gateway")
    yield d
    d.close()


@pytest.fixture(scope="module")
def client(dep):
    c = MilvusClient(dep.uri)
    yield c
    c.close()


def _bm25(doc_tokens: dict[int, list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> dict:
    toks = {i: Counter(t) for i, t in doc_tokens.items()}
    n = len(toks)
    avgdl = sum(sum(c.values()) for c in toks.values()) / n
    out = {}
    for i, tf in toks.items():
        dl = sum(tf.values())
        score = 0.0
        for term, qf in Counter(query).items():
            if term in tf:
                df = sum(1 for c in toks.values() if term in c)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += qf * idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * dl / avgdl))
        if score > 0:
            out[i] = score
    return out


def _collection(client: MilvusClient, name: str, **text_kw) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("language", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, **text_kw)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


def _check(client, name, expected: dict[int, float], query: str, **search_params) -> None:
    res = client.search(
        name, [query], anns_field="sparse", limit=10, search_params={"metric_type": "BM25", **search_params}
    )
    got = {h["id"]: h["distance"] for h in res[0]}
    assert got.keys() == expected.keys()
    for i, score in expected.items():
        assert got[i] == pytest.approx(score, rel=1e-4)
    scores = [h["distance"] for h in res[0]]
    assert scores == sorted(scores, reverse=True)


def test_multi_analyzer_rows_and_queries_use_their_analyzers(client):
    params = {"by_field": "language", "analyzers": ANALYZERS, "alias": {"jp": "Japanese"}}
    _collection(client, "ml_multi", multi_analyzer_params=params)
    client.insert("ml_multi", [{"id": i, "language": lang, "text": t} for i, lang, t in ROWS])
    pick = {"English": "English", "Japanese": "Japanese", "jp": "Japanese"}
    analyzers = {k: build_analyzer(v) for k, v in ANALYZERS.items()}
    docs = {i: analyzers[pick.get(lang, "default")].tokens(t) for i, lang, t in ROWS}
    assert docs[3] == ["千", "と", "千尋", "の", "神隠し"] and docs[1] == ["lord", "ring"]

    for query, name in [
        ("神隠し", "Japanese"),
        ("千尋", "jp"),
        ("Rings", "English"),
        ("the rings", "English"),
    ]:
        _check(
            client, "ml_multi", _bm25(docs, analyzers[pick[name]].tokens(query)), query, analyzer_name=name
        )
    # no analyzer_name (or an unknown one): the default analyzer reads the query
    _check(client, "ml_multi", _bm25(docs, analyzers["default"].tokens("rings")), "rings")
    _check(
        client, "ml_multi", _bm25(docs, analyzers["default"].tokens("rings")), "rings", analyzer_name="Elvish"
    )
    # Japanese text is searchable by its words: the story titles share 千尋 and 神隠し, not characters
    top = client.search(
        "ml_multi", ["千尋"], anns_field="sparse", limit=3, search_params={"analyzer_name": "Japanese"}
    )
    assert {h["id"] for h in top[0]} == {3, 6, 7}

    desc = client.describe_collection("ml_multi")
    text = next(f for f in desc["fields"] if f["name"] == "text")
    assert json.loads(text["params"]["multi_analyzer_params"]) == params

    got = client.run_analyzer(
        ["君の名は。", "The Rings"],
        collection_name="ml_multi",
        field_name="text",
        analyzer_names=["Japanese", "English"],
    )
    assert [r.tokens for r in got] == [["君", "の", "名", "は"], ["ring"]]
    one = client.run_analyzer(
        ["the Rings"], collection_name="ml_multi", field_name="text", analyzer_names="jp"
    )
    assert [r.tokens for r in one] == [["the", "Rings"]]  # lindera keeps ASCII words as they are
    with pytest.raises(MilvusException, match="one name for all texts or one per text"):
        client.run_analyzer(
            ["a", "b", "c"], collection_name="ml_multi", field_name="text", analyzer_names=["English", "jp"]
        )


def test_multi_analyzer_refusals(client):
    _collection(client, "ml_single", analyzer_params={"type": "english"})
    client.insert("ml_single", [{"id": 1, "language": "English", "text": "rings"}])
    with pytest.raises(MilvusException, match="has one analyzer"):
        client.search("ml_single", ["rings"], anns_field="sparse", search_params={"analyzer_name": "English"})
    with pytest.raises(MilvusException, match="has one analyzer"):
        client.run_analyzer("x", collection_name="ml_single", field_name="text", analyzer_names=["English"])
    bad = {"by_field": "language", "analyzers": ANALYZERS}
    with pytest.raises(MilvusException, match="enable_match"):
        _collection(client, "ml_bad", multi_analyzer_params=bad, enable_match=True)
    with pytest.raises(MilvusException, match="by_field 'lang'"):
        _collection(client, "ml_bad", multi_analyzer_params={**bad, "by_field": "lang"})
    with pytest.raises(MilvusException, match='"default"'):
        _collection(
            client, "ml_bad", multi_analyzer_params={**bad, "analyzers": {"English": {"type": "english"}}}
        )
    assert not client.has_collection("ml_bad")


def test_language_identifier_analyzes_each_text_by_its_language(client):
    params = {"tokenizer": {"type": "language_identifier", "analyzers": ANALYZERS}}
    _collection(client, "ml_langid", analyzer_params=params)
    rows = [(i, t) for i, _, t in ROWS]
    client.insert("ml_langid", [{"id": i, "text": t} for i, t in rows])
    analyzer = build_analyzer(params)
    docs = {i: analyzer.tokens(t) for i, t in rows}
    assert docs[3] == ["千", "と", "千尋", "の", "神隠し"]  # detected Japanese: lindera
    assert docs[1] == ["lord", "ring"]  # detected English: stemmed, stop words out
    for query in ("神隠し", "千尋の神隠し", "the Rings", "Lord of the Rings"):
        _check(client, "ml_langid", _bm25(docs, analyzer.tokens(query)), query)
    top = client.search("ml_langid", ["神隠し"], anns_field="sparse", limit=2, output_fields=["text"])
    assert {h["entity"]["text"] for h in top[0]} <= {
        "千と千尋の神隠し",
        "千尋の神隠しの物語",
        "神隠し and rings",
    }
    assert client.run_analyzer("千と千尋の神隠し", analyzer_params=params).tokens == [
        "千",
        "と",
        "千尋",
        "の",
        "神隠し",
    ]


def test_multi_analyzer_survives_a_restart(dep, client):
    """The analyzers are part of the stored schema: after a restart rows and queries use them still."""
    kw = {"anns_field": "sparse", "limit": 10, "search_params": {"analyzer_name": "Japanese"}}
    before = [(h["id"], h["distance"]) for h in client.search("ml_multi", ["神隠し"], **kw)[0]]
    assert before
    for proc in ("gateway", "indexer", "streams"):
        dep.stop(proc)
    dep.start("streams", "indexer", "gateway")
    c = MilvusClient(dep.uri)
    try:
        deadline = time.monotonic() + 60
        while str(c.get_load_state("ml_multi")["state"]) != "Loaded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        after = [(h["id"], h["distance"]) for h in c.search("ml_multi", ["神隠し"], **kw)[0]]
        assert [i for i, _ in after] == [i for i, _ in before]
        assert [d for _, d in after] == pytest.approx([d for _, d in before], rel=1e-6)
        c.insert("ml_multi", [{"id": 8, "language": "jp", "text": "神隠しの森"}])
        got = c.search("ml_multi", ["森"], **kw)[0]
        assert [h["id"] for h in got] == [8]  # lindera made 森 a word of the new row
    finally:
        c.close()
