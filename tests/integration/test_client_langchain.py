"""langchain-milvus (requirements-clients.lock) against a real walvus: BM25 hybrid and BM25-only
stores built on ``BM25BuiltInFunction``, and the usual dense-store operations.

The embeddings are a deterministic word-count hash (tests/integration/client_support.py), so
every ranking is checked against references computed here: L2 over the same vectors, Milvus's
BM25 over the live documents, and reciprocal rank fusion of the two.

Client-side faults of langchain-milvus 0.4.0 found on the way (not walvus's; Milvus answers the
same): ``get_by_ids`` raises NotImplementedError; MMR on a multi-vector store asserts; and
``_remove_forbidden_fields`` appends the BM25 output field to the store's own ``_vector_field``
list on every search, so a hybrid search without an explicit ranker (default
``WeightedRanker(1.0, ...)``, one weight per vector field) sends one weight too many from the
second search on and is refused ("the length of weights param mismatch").
"""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_milvus import BM25BuiltInFunction, Milvus
from pymilvus import DataType, Function, FunctionType, MilvusClient

from tests.integration.client_support import (
    CORPUS,
    assert_ranked,
    bm25,
    dense_ranking,
    embed,
    l2,
    no_network,  # noqa: F401  (fixture)
    rrf,
    sparse_ranking,
)
from tests.procs import LAYOUTS, Deployment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("no_network"),
    # ranker_type= is deprecated in langchain-milvus but still what most code calls: it is tested
    pytest.mark.filterwarnings("ignore:The 'ranker_type' and 'ranker_params':DeprecationWarning"),
]

TEXTS = [t for t, _, _ in CORPUS]
METAS = [{"topic": topic, "n": n} for _, topic, n in CORPUS]
IDS = [f"doc{n}" for _, _, n in CORPUS]
DOCS = dict(zip(IDS, TEXTS, strict=True))


class WordEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return embed(text)


@pytest.fixture(scope="module", params=LAYOUTS)
def dep(request, kafka_bootstrap, tmp_path_factory):
    """The searcher in the gateway, then two searcher processes behind it (``tests.procs.LAYOUTS``)."""
    d = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("langchain"))
    d.start_all(request.param)
    yield d
    d.close()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _rerank(**params: object) -> Function:
    return Function(name="rerank", input_field_names=[], function_type=FunctionType.RERANK, params=params)


def _hybrid_store(dep: Deployment, name: str, **kw: object) -> Milvus:
    return Milvus(
        embedding_function=WordEmbeddings(),
        builtin_function=BM25BuiltInFunction(),
        vector_field=["dense", "sparse"],
        connection_args={"uri": dep.uri},
        collection_name=name,
        consistency_level="Strong",
        **kw,
    )


def _keyed(results: list[tuple[Document, float]]) -> list[tuple[str, float]]:
    return [(doc.metadata["pk"], score) for doc, score in results]


def test_bm25_hybrid_store(dep):
    name = _name("lc_hybrid")
    store = _hybrid_store(dep, name)
    assert store.add_texts(TEXTS, metadatas=METAS, ids=IDS) == IDS

    # the collection langchain made: a BM25 function from text to a sparse field, both indexed
    desc = MilvusClient(dep.uri).describe_collection(name)
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields["sparse"]["type"] == DataType.SPARSE_FLOAT_VECTOR
    assert fields["text"]["params"].get("enable_analyzer") == "true"  # type params travel as strings
    (fn,) = desc["functions"]
    assert fn["type"] == FunctionType.BM25 and fn["input_field_names"] == ["text"]

    # the first search without a ranker: langchain's WeightedRanker(1.0, 1.0), score-normalised
    (first, _) = store.similarity_search_with_score("quantum physics", k=1, fetch_k=8)[0]
    assert first.metadata["pk"] == "doc2" and first.page_content == DOCS["doc2"]

    # RRF, as a rerank function and as the classic ranker: fusion of the L2 and BM25 rankings
    for query in ("quantum physics", "apple cake", "stock market"):
        expected = rrf([dense_ranking(DOCS, query, 8), sparse_ranking(DOCS, query, 8)], k=60)
        got = store.similarity_search_with_score(
            query, k=3, fetch_k=8, reranker=_rerank(reranker="rrf", k=60)
        )
        assert_ranked(_keyed(got), expected, 3)
        classic = store.similarity_search_with_score(query, k=3, fetch_k=8, ranker_type="rrf")
        assert [k for k, _ in _keyed(classic)] == [k for k, _ in _keyed(got)]
        assert [s for _, s in _keyed(classic)] == pytest.approx([s for _, s in _keyed(got)])
    top = store.similarity_search("quantum physics", k=1, fetch_k=8, reranker=_rerank(reranker="rrf"))
    assert top[0].page_content == DOCS["doc2"] and top[0].metadata == {
        "pk": "doc2",
        "topic": "science",
        "n": 2,
    }

    # weighted, all weight on BM25 and no normalisation: the raw BM25 scores, dense-only hits at 0
    got = store.similarity_search_with_score(
        "apple cake", k=8, fetch_k=8, reranker=_rerank(reranker="weighted", weights=[0.0, 1.0])
    )
    expected = {key: 0.0 for key in DOCS} | bm25(DOCS, "apple cake")
    assert _keyed(got)[:2] == [
        ("doc6", pytest.approx(expected["doc6"])),
        ("doc3", pytest.approx(expected["doc3"])),
    ]
    # both routes: as in Milvus 2.6, L2 beside BM25 turns larger-is-better (1 - 2 atan(d) / pi); the
    # function form leaves BM25 raw by default, the classic ranker normalises it (2 atan(s) / pi)
    query = "apple cake"
    near = {k: 1 - 2 * math.atan(l2(embed(t), embed(query))) / math.pi for k, t in DOCS.items()}
    scores = bm25(DOCS, query)
    got = store.similarity_search_with_score(
        query, k=4, fetch_k=8, reranker=_rerank(reranker="weighted", weights=[0.5, 0.5])
    )
    assert_ranked(_keyed(got), {k: 0.5 * near[k] + 0.5 * scores.get(k, 0.0) for k in DOCS}, 4)
    got = store.similarity_search_with_score(
        query, k=4, fetch_k=8, ranker_type="weighted", ranker_params={"weights": [0.5, 0.5]}
    )
    normed = {k: 0.5 * near[k] + 0.5 * 2 * math.atan(scores.get(k, 0.0)) / math.pi for k in DOCS}
    assert_ranked(_keyed(got), normed, 4)
    # all weight on the dense field (classic ranker, normalised): the L2 order
    got = store.similarity_search_with_score(
        "apple cake", k=4, fetch_k=8, ranker_type="weighted", ranker_params={"weights": [1.0, 0.0]}
    )
    assert [k for k, _ in _keyed(got)] == dense_ranking(DOCS, "apple cake", 4)

    # a metadata filter applies to both routes
    live = {k: v for k, v in DOCS.items() if k in ("doc0", "doc1", "doc5")}
    got = store.similarity_search_with_score(
        "cats and dogs", k=3, fetch_k=8, expr='topic == "pets" and n >= 0', ranker_type="rrf"
    )
    assert all(doc.metadata["topic"] == "pets" for doc, _ in got)
    assert_ranked(
        _keyed(got),
        rrf([dense_ranking(live, "cats and dogs", 8), sparse_ranking(live, "cats and dogs", 8)]),
        3,
    )

    # delete by ids and by expression, then upsert new text: both routes see the change
    assert store.delete(ids=["doc2"]) is True
    assert store.delete(expr='topic == "finance"') is True
    store.upsert(
        ids=["doc0"],
        documents=[Document(page_content="quantum cat on a mat", metadata={"topic": "pets", "n": 0})],
    )
    docs = {k: v for k, v in DOCS.items() if k not in ("doc2", "doc4", "doc7")} | {
        "doc0": "quantum cat on a mat"
    }
    got = store.similarity_search_with_score("quantum physics", k=3, fetch_k=8, ranker_type="rrf")
    assert_ranked(
        _keyed(got),
        rrf([dense_ranking(docs, "quantum physics", 8), sparse_ranking(docs, "quantum physics", 8)]),
        3,
    )
    assert got[0][0].page_content == "quantum cat on a mat"
    assert sorted(store.get_pks("n >= 0")) == sorted(docs)


def test_bm25_only_store(dep):
    """A store with no embedding model: ``BM25BuiltInFunction`` alone, searched with raw text."""
    name = _name("lc_bm25")
    store = Milvus(
        embedding_function=None,
        builtin_function=BM25BuiltInFunction(),
        vector_field="sparse",
        connection_args={"uri": dep.uri},
        collection_name=name,
        consistency_level="Strong",
    )
    store.add_texts(TEXTS, metadatas=METAS, ids=IDS)
    docs = dict(DOCS)
    for query in ("quantum physics", "stock market", "apple", "black"):
        got = store.similarity_search_with_score(query, k=4)
        assert_ranked(_keyed(got), bm25(docs, query), 4)
    # the document holding the only occurrence of a term ranks first; documents without it are no hits
    (only,) = store.similarity_search("cinnamon", k=4)
    assert only.page_content == DOCS["doc3"]
    assert store.similarity_search("zebra", k=4) == []
    got = store.similarity_search_with_score("cats dogs", k=4, expr="n > 1")
    # a filter narrows the hits, not the statistics: doc5 keeps its score over the whole collection
    assert _keyed(got) == [("doc5", pytest.approx(bm25(docs, "cats dogs")["doc5"], rel=1e-4))]
    # scores follow deletes and upserts (document count, lengths and frequencies are live)
    assert store.delete(ids=["doc2", "doc6"]) is True
    store.upsert(ids=["doc4"], documents=[Document(page_content="physics physics market", metadata=METAS[4])])
    docs = {k: v for k, v in docs.items() if k not in ("doc2", "doc6")} | {"doc4": "physics physics market"}
    for query in ("quantum physics", "stock market", "black"):
        assert_ranked(_keyed(store.similarity_search_with_score(query, k=4)), bm25(docs, query), 4)


def test_dense_store_operations(dep):
    """The everyday langchain calls on a dense-only store, each checked against the L2 reference."""
    name = _name("lc_dense")
    emb = WordEmbeddings()
    store = Milvus.from_texts(
        TEXTS[:6],
        emb,
        metadatas=METAS[:6],
        ids=IDS[:6],
        connection_args={"uri": dep.uri},
        collection_name=name,
        consistency_level="Strong",
    )
    docs = {k: DOCS[k] for k in IDS[:6]}
    assert (
        store.add_documents([Document(page_content=TEXTS[i], metadata=METAS[i]) for i in (6, 7)], ids=IDS[6:])
        == IDS[6:]
    )
    docs = dict(DOCS)

    for query in ("apple pie", "stock market physics"):
        got = store.similarity_search_with_score(query, k=3)
        assert [k for k, _ in _keyed(got)] == dense_ranking(docs, query, 3)
        for doc, score in got:
            assert score == pytest.approx(l2(embed(docs[doc.metadata["pk"]]), embed(query)), abs=1e-5)
            assert doc.page_content == docs[doc.metadata["pk"]]
    by_vector = store.similarity_search_by_vector(embed("black tea"), k=2)
    assert [d.metadata["pk"] for d in by_vector] == dense_ranking(docs, "black tea", 2)
    relevance = store.similarity_search_with_relevance_scores("black tea", k=2)
    assert [d.metadata["pk"] for d, _ in relevance] == dense_ranking(docs, "black tea", 2)
    assert 1 >= relevance[0][1] >= relevance[1][1] >= 0
    filtered = store.similarity_search("cats", k=5, expr='topic == "pets" and n != 1')
    assert [d.metadata["pk"] for d in filtered] == dense_ranking(
        {k: docs[k] for k in ("doc0", "doc5")}, "cats", 5
    )

    mmr = store.max_marginal_relevance_search("cats and dogs", k=3, fetch_k=6, lambda_mult=0.5)
    assert len({d.metadata["pk"] for d in mmr}) == 3
    assert mmr[0].metadata["pk"] == dense_ranking(docs, "cats and dogs", 1)[0]  # MMR starts at the nearest
    assert [
        d.metadata["pk"] for d in store.as_retriever(search_kwargs={"k": 2}).invoke("quantum")
    ] == dense_ranking(docs, "quantum", 2)
    assert (
        len(store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4}).invoke("market")) == 2
    )

    assert sorted(store.get_pks('topic == "food"')) == ["doc3", "doc6"]
    by_meta = store.search_by_metadata('topic == "finance"')
    assert sorted(d.page_content for d in by_meta) == sorted([DOCS["doc4"], DOCS["doc7"]])

    store.upsert(
        ids=["doc6"],
        documents=[Document(page_content="green tea with lemon", metadata={"topic": "food", "n": 6})],
    )
    docs["doc6"] = "green tea with lemon"
    assert store.similarity_search("green tea lemon", k=1)[0].metadata["pk"] == "doc6"
    assert store.delete(ids=["doc6", "doc3"]) is True
    assert store.delete(expr="n >= 7") is True
    for key in ("doc3", "doc6", "doc7"):
        del docs[key]
    assert sorted(store.get_pks("n >= 0")) == sorted(docs)
    assert [d.metadata["pk"] for d in store.similarity_search("apple pie", k=8)] == dense_ranking(
        docs, "apple pie", 8
    )

    async def async_calls() -> tuple[list[str], list[Document]]:
        added = await store.aadd_texts(
            ["async apple tart"], metadatas=[{"topic": "food", "n": 9}], ids=["doc9"]
        )
        return added, await store.asimilarity_search("async apple tart", k=1)

    added, found = asyncio.run(async_calls())
    assert added == ["doc9"] and found[0].metadata["pk"] == "doc9"
    with pytest.raises(NotImplementedError):  # langchain-milvus 0.4.0 has no get_by_ids (client side)
        store.get_by_ids(["doc0"])
    store.drop()
    assert not MilvusClient(dep.uri).has_collection(name)


@pytest.mark.parametrize("layout", ["dynamic_field", "partition_key"])
def test_dynamic_field_and_partition_key_stores(dep, layout):
    kw = {"enable_dynamic_field": True} if layout == "dynamic_field" else {"partition_key_field": "topic"}
    store = Milvus.from_texts(
        TEXTS,
        WordEmbeddings(),
        metadatas=METAS,
        connection_args={"uri": dep.uri},
        collection_name=_name(f"lc_{layout}"),
        consistency_level="Strong",
        auto_id=True,
        **kw,
    )
    got = store.similarity_search("cats and dogs", k=2, expr='topic == "pets"')
    pets = {k: DOCS[k] for k in ("doc0", "doc1", "doc5")}
    assert [d.page_content for d in got] == [pets[k] for k in dense_ranking(pets, "cats and dogs", 2)]
    assert all(isinstance(d.metadata["pk"], int) for d in got)  # auto_id keys
