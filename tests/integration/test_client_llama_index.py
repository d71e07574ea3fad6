"""llama-index's Milvus vector store (requirements-clients.lock) against a real walvus, with
``enable_sparse=True``: the default BM25 built-in function (walvus tokenises and scores) and a
client-side sparse embedding function written here, queried in default (dense), sparse,
text-search and hybrid modes, with metadata filters and deletes.

The embedding model is a deterministic word-count hash (tests/integration/client_support.py), so
each answer is checked against a reference computed here: inner products over the same vectors,
Milvus's BM25 over the live documents, and reciprocal rank fusion of the two rankings.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections import Counter

import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import Document
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.vector_stores.milvus import MilvusVectorStore
from llama_index.vector_stores.milvus.utils import BaseSparseEmbeddingFunction, BM25BuiltInFunction
from pymilvus import DataType, FunctionType, MilvusClient

from tests.integration.client_support import (
    CORPUS,
    DIM,
    assert_ranked,
    bm25,
    dense_ranking,
    embed,
    ip,
    no_network,  # noqa: F401  (fixture)
    rrf,
    sparse_ranking,
    tokens,
)
from tests.procs import LAYOUTS, Deployment

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_network")]

DOCS = {f"doc{n}": text for text, _, n in CORPUS}
TOPIC = {f"doc{n}": topic for _, topic, n in CORPUS}


class WordEmbedding(BaseEmbedding):
    """llama-index's embedding interface over client_support.embed (no model, no network)."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return embed(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return embed(query)


def _term(word: str) -> int:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % (1 << 30)


class WordCountSparse(BaseSparseEmbeddingFunction):
    """A client-side sparse embedding: each word's count at its hashed dimension."""

    def _encode(self, text: str) -> dict[int, float]:
        return {_term(w): float(c) for w, c in Counter(tokens(text)).items()}

    def encode_queries(self, queries: list[str]) -> list[dict[int, float]]:
        return [self._encode(q) for q in queries]

    def encode_documents(self, documents: list[str]) -> list[dict[int, float]]:
        return [self._encode(d) for d in documents]


def _sparse_ip(docs: dict[str, str], query: str) -> dict[str, float]:
    q = Counter(tokens(query))
    scores = {
        k: float(sum(q[w] * c for w, c in Counter(tokens(t)).items() if w in q)) for k, t in docs.items()
    }
    return {k: s for k, s in scores.items() if s > 0}


@pytest.fixture(scope="module", params=LAYOUTS)
def dep(request, kafka_bootstrap, tmp_path_factory):
    """The searcher in the gateway, then two searcher processes behind it (``tests.procs.LAYOUTS``)."""
    d = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("llama"))
    d.start_all(request.param)
    yield d
    d.close()


def _index(dep: Deployment, name: str, **store_kw: object) -> tuple[MilvusVectorStore, VectorStoreIndex]:
    store = MilvusVectorStore(
        uri=dep.uri, dim=DIM, collection_name=name, consistency_level="Strong", overwrite=True, **store_kw
    )
    documents = [
        Document(
            text=text,
            id_=f"doc{n}",
            metadata={"topic": topic, "n": n},
            excluded_embed_metadata_keys=["topic", "n"],  # embed the text alone, as the reference does
        )
        for text, topic, n in CORPUS
    ]
    index = VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=WordEmbedding(),
    )
    return store, index


def _retrieve(
    index: VectorStoreIndex, query: str, mode: str, k: int, **kw: object
) -> list[tuple[str, float]]:
    hits = index.as_retriever(similarity_top_k=k, vector_store_query_mode=mode, **kw).retrieve(query)
    for hit in hits:
        assert hit.node.get_content() == DOCS[hit.node.ref_doc_id]
    return [(hit.node.ref_doc_id, hit.score) for hit in hits]


def _pets(min_n: int) -> MetadataFilters:
    return MetadataFilters(
        filters=[
            MetadataFilter(key="topic", value="pets"),
            MetadataFilter(key="n", value=min_n, operator=FilterOperator.GTE),
        ]
    )


def _dense_scores(docs: dict[str, str], query: str) -> dict[str, float]:
    return {k: ip(embed(t), embed(query)) for k, t in docs.items()}


def test_enable_sparse_with_builtin_bm25(dep):
    name = f"li_bm25_{uuid.uuid4().hex[:8]}"
    store, index = _index(dep, name, enable_sparse=True)

    # the store's collection: BM25 from the text field to a sparse field walvus fills
    desc = MilvusClient(dep.uri).describe_collection(name)
    (fn,) = desc["functions"]
    assert fn["type"] == FunctionType.BM25
    assert fn["input_field_names"] == ["text"] and fn["output_field_names"] == ["sparse_embedding"]
    assert {f["name"]: f["type"] for f in desc["fields"]}["sparse_embedding"] == DataType.SPARSE_FLOAT_VECTOR

    docs = dict(DOCS)
    for query in ("quantum physics", "apple cake", "stock market"):
        assert_ranked(_retrieve(index, query, "default", 3), _dense_scores(docs, query), 3)
        assert_ranked(_retrieve(index, query, "sparse", 3), bm25(docs, query), 3)
        assert_ranked(_retrieve(index, query, "text_search", 3), bm25(docs, query), 3)
        fused = rrf([dense_ranking(docs, query, 3), sparse_ranking(docs, query, 3)], k=60)
        assert_ranked(_retrieve(index, query, "hybrid", 3), fused, 3)
    # the document holding the only occurrence of a term is the only BM25 hit
    assert [k for k, _ in _retrieve(index, "cinnamon", "sparse", 3)] == ["doc3"]

    # metadata filters reach every mode; BM25 statistics stay those of the whole collection
    pets = {k for k in docs if TOPIC[k] == "pets" and int(k[3:]) >= 1}
    query = "cats and dogs"
    got = _retrieve(index, query, "default", 3, filters=_pets(1))
    assert_ranked(got, {k: s for k, s in _dense_scores(docs, query).items() if k in pets}, 3)
    got = _retrieve(index, query, "sparse", 3, filters=_pets(1))
    assert_ranked(got, {k: s for k, s in bm25(docs, query).items() if k in pets}, 3)
    got = _retrieve(index, query, "hybrid", 3, filters=_pets(1))
    dense = [k for k in dense_ranking(docs, query, 8) if k in pets][:3]
    assert_ranked(got, rrf([dense, sparse_ranking(docs, query, 3, among=pets)]), 3)

    # the weighted ranker, all weight on the dense route: the dense order
    store.hybrid_ranker, store.hybrid_ranker_params = "WeightedRanker", {"weights": [1.0, 0.0]}
    assert [k for k, _ in _retrieve(index, "apple cake", "hybrid", 3)] == dense_ranking(docs, "apple cake", 3)
    store.hybrid_ranker, store.hybrid_ranker_params = "RRFRanker", {}

    # deletes by document and by metadata: gone from both routes, and BM25 scores follow
    index.delete_ref_doc("doc3", delete_from_docstore=True)
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="finance")]))
    for key in ("doc3", "doc4", "doc7"):
        del docs[key]
    assert_ranked(_retrieve(index, "apple cake", "sparse", 3), bm25(docs, "apple cake"), 3)
    assert _retrieve(index, "stock market", "sparse", 3) == []
    fused = rrf([dense_ranking(docs, "apple cake", 3), sparse_ranking(docs, "apple cake", 3)])
    assert_ranked(_retrieve(index, "apple cake", "hybrid", 3), fused, 3)
    kept = store.get_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="food")]))
    assert [n.get_content() for n in kept] == [DOCS["doc6"]]

    async def async_hybrid() -> list[tuple[str, float]]:
        retriever = index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid")
        return [(h.node.ref_doc_id, h.score) for h in await retriever.aretrieve("black tea")]

    fused = rrf([dense_ranking(docs, "black tea", 3), sparse_ranking(docs, "black tea", 3)])
    assert_ranked(asyncio.run(async_hybrid()), fused, 3)
    store.clear()
    assert not MilvusClient(dep.uri).has_collection(name)


def test_enable_sparse_with_client_side_sparse_function(dep):
    name = f"li_sparse_{uuid.uuid4().hex[:8]}"
    store, index = _index(dep, name, enable_sparse=True, sparse_embedding_function=WordCountSparse())
    desc = MilvusClient(dep.uri).describe_collection(name)
    assert desc["functions"] == []  # the client computes the sparse vectors
    docs = dict(DOCS)
    for query in ("quantum physics", "apple cake", "stock market today"):  # no ties among the hits
        scores = _sparse_ip(docs, query)
        assert_ranked(_retrieve(index, query, "sparse", 4), scores, 4)
        sparse = sorted(scores, key=lambda k: -scores[k])[:3]
        assert_ranked(_retrieve(index, query, "hybrid", 3), rrf([dense_ranking(docs, query, 3), sparse]), 3)
    # every word a query shares with a document counts once per occurrence on each side
    assert sorted(_retrieve(index, "black black", "sparse", 4)) == [("doc2", 2.0), ("doc6", 2.0)]
    got = _retrieve(index, "cats dogs", "sparse", 4, filters=_pets(2))
    assert got == [("doc5", pytest.approx(2.0))]
    index.delete_ref_doc("doc2", delete_from_docstore=True)
    del docs["doc2"]
    assert_ranked(_retrieve(index, "quantum physics", "sparse", 4), _sparse_ip(docs, "quantum physics"), 4)
    assert_ranked(
        _retrieve(index, "quantum physics", "default", 2), _dense_scores(docs, "quantum physics"), 2
    )


def test_bm25_with_the_english_analyzer_and_a_reopened_store(dep):
    """``BM25BuiltInFunction(analyzer_params={"type": "english"})``: walvus stems and drops stop words;
    a second store opened on the existing collection finds its BM25 function and searches it."""
    name = f"li_english_{uuid.uuid4().hex[:8]}"
    bm25_fn = BM25BuiltInFunction(analyzer_params={"type": "english"}, enable_match=True)
    _index(dep, name, enable_sparse=True, sparse_embedding_function=bm25_fn)
    fields = {f["name"]: f for f in MilvusClient(dep.uri).describe_collection(name)["fields"]}
    assert fields["text"]["params"]["enable_match"] == "true"
    reopened = MilvusVectorStore(uri=dep.uri, dim=DIM, collection_name=name, enable_sparse=True)
    index = VectorStoreIndex.from_vector_store(reopened, embed_model=WordEmbedding())
    got = _retrieve(index, "cat", "sparse", 5)  # "cats" stems to "cat"; "the"/"and" are stop words
    assert {k for k, _ in got} == {"doc0", "doc1", "doc5"}
    assert got[0][0] == "doc0"  # the same one occurrence in the shortest document ("cat sat mat")
    assert _retrieve(index, "the and", "sparse", 5) == []  # stop words only: no hits


def test_the_network_guard_holds():
    """The guard these tests run under refuses any address off this machine."""
    with pytest.raises(OSError, match="test guard"):
        socket.create_connection(("198.51.100.7", 443), timeout=1)
    with pytest.raises(OSError, match="test guard"):
        socket.create_connection(("openaipublic.blob.core.windows.net", 443), timeout=1)
