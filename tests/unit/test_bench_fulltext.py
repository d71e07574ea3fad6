"""bench/fulltext.py's corpus, numpy BM25 reference and nDCG, against plain-Python computations."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from bench.fulltext import K1, B, Bm25Reference, corpus, ndcg, vocabulary


def test_corpus_is_deterministic_and_zipf_like():
    a, qa = corpus(300, 500, 10, seed=4)
    b, qb = corpus(300, 500, 10, seed=4)
    assert a == b and qa == qb
    assert len(set(vocabulary(1000))) == 1000
    counts = Counter(w for t in a for w in t.split()).most_common()
    assert counts[0][1] > 5 * counts[50][1]  # a heavy head
    assert all(20 <= len(t.split()) <= 120 for t in a)


def test_reference_scores_equal_plain_bm25():
    texts, queries = corpus(200, 300, 5, seed=9)
    ref = Bm25Reference(texts)
    docs = [Counter(t.split()) for t in texts]
    avgdl = sum(sum(d.values()) for d in docs) / len(docs)
    for q in queries:
        want = np.zeros(len(texts))
        for i, d in enumerate(docs):
            dl = sum(d.values())
            for term in set(q.split()):
                if term in d:
                    df = sum(1 for x in docs if term in x)
                    idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
                    want[i] += idf * d[term] * (K1 + 1) / (d[term] + K1 * (1 - B + B * dl / avgdl))
        np.testing.assert_allclose(ref.scores(q), want, rtol=1e-12)
        top = ref.top(q, 10)
        assert top == sorted(np.flatnonzero(want), key=lambda i: (-want[i], i))[:10]


def test_ndcg():
    scores = np.array([0.0, 3.0, 2.0, 1.0])
    assert ndcg([1, 2, 3], scores, 3) == 1.0
    assert ndcg([2, 1, 3], scores, 3) == pytest.approx(
        (2 + 3 / math.log2(3) + 1 / 2) / (3 + 2 / math.log2(3) + 1 / 2)
    )
    assert ndcg([], scores, 3) == 0.0
