"""What the client-library tests (langchain-milvus, llama-index) share: a small corpus, a
deterministic word-count embedding, independent references for BM25 and rank fusion, and a guard
that fails any attempt to reach the network (no model or data downloads)."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import socket
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

# (text, topic, n): no two documents tie on a query the tests ask
CORPUS: list[tuple[str, str, int]] = [
    ("the cat sat on the mat", "pets", 0),
    ("dogs chase cats in the park", "pets", 1),
    ("quantum physics explains black holes", "science", 2),
    ("a recipe for apple pie with cinnamon", "food", 3),
    ("the stock market fell sharply today", "finance", 4),
    ("cats and dogs living together", "pets", 5),
    ("black tea and apple cake", "food", 6),
    ("physics of the stock market", "finance", 7),
]
DIM = 32


def tokens(text: str) -> list[str]:
    """Milvus's standard analyzer on ASCII text, written independently: lower-cased word runs."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _slot(word: str) -> int:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % DIM


def embed(text: str) -> list[float]:
    """A unit vector: word counts hashed into DIM slots, plus a small text-seeded jitter so that no
    two documents lie at exactly the same distance from a query (the ranking is then unique)."""
    v = np.zeros(DIM)
    for w in tokens(text):
        v[_slot(w)] += 1.0
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v += 0.05 * np.random.default_rng(seed).random(DIM)
    v /= np.linalg.norm(v)
    return v.astype(np.float32).astype(float).tolist()


def ip(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.dot(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)))


def l2(a: Sequence[float], b: Sequence[float]) -> float:
    """Milvus's L2 metric is the squared euclidean distance."""
    d = np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)
    return float(np.dot(d, d))


def bm25(docs: Mapping[str, str], query: str, k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
    """Milvus's BM25 over the live documents; only documents with a positive score are hits."""
    tfs = {k: Counter(tokens(t)) for k, t in docs.items()}
    n = len(tfs)
    avgdl = sum(sum(c.values()) for c in tfs.values()) / n
    out = {}
    for key, tf in tfs.items():
        dl = sum(tf.values())
        score = 0.0
        for term, qf in Counter(tokens(query)).items():
            if term in tf:
                df = sum(1 for c in tfs.values() if term in c)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += qf * idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * dl / avgdl))
        if score > 0:
            out[key] = score
    return out


def rrf(rankings: Sequence[Sequence[str]], k: float = 60.0) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


def dense_ranking(docs: Mapping[str, str], query: str, limit: int) -> list[str]:
    q = embed(query)
    return sorted(docs, key=lambda key: l2(embed(docs[key]), q))[:limit]


def sparse_ranking(
    docs: Mapping[str, str], query: str, limit: int, among: set[str] | None = None
) -> list[str]:
    """BM25 hits best first; ``among`` keeps only the documents a filter lets through (the
    statistics stay those of the whole collection)."""
    scores = bm25(docs, query)
    return sorted((k for k in scores if among is None or k in among), key=lambda key: -scores[key])[:limit]


def assert_ranked(got: Sequence[tuple[str, float]], expected: Mapping[str, float], k: int) -> None:
    """``got`` (key, score) best first is the top ``k`` of ``expected``, each with its score."""
    assert len(got) == min(k, len(expected)), (got, expected)
    for key, score in got:
        assert score == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (key, got, expected)
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)
    keys = {key for key, _ in got}
    assert all(key in keys for key, s in expected.items() if s > scores[-1] * (1 + 1e-4)), (got, expected)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Python sockets may resolve and reach only this machine: a client library that tried to
    download a model, a tokenizer or NLTK data fails the test. (gRPC's sockets are not Python's.)"""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse_remote(host: object, what: object) -> None:
        name = "" if host is None else host.decode() if isinstance(host, bytes) else str(host)
        try:
            local = ipaddress.ip_address(name.split("%")[0]).is_loopback
        except ValueError:
            local = name in ("", "localhost")
        if not local:
            raise OSError(f"test guard: no network access outside this machine (tried {what!r})")

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse_remote(address[0] if isinstance(address, tuple) else address, address)

    def getaddrinfo(host: object, *args: object, **kw: object) -> list:
        refuse_remote(host, host)
        return real_getaddrinfo(host, *args, **kw)

    def connect(sock: socket.socket, address: object) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
