"""BM25 function: text into term-frequency sparse vectors, at insert and at search.

A document's vector has one dimension per distinct token: the token's 32-bit MurmurHash3
(``schemas.analyzer.term_id``), valued with how often the token occurs. No vocabulary is kept:
the hash is the term id. Document length is the sum of the values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from schemas.analyzer import Analyzer, term_id
from schemas.sparse import assemble


def term_frequencies(analyzer: Analyzer, texts: Sequence[str | None]) -> pa.StructArray:
    """The stored sparse column of ``texts`` (null text: an empty vector)."""
    ids: list[int] = []
    counts = np.zeros(len(texts), np.int64)
    for i, text in enumerate(texts):
        tokens = analyzer.tokens(text) if text else []
        counts[i] = len(tokens)
        ids.extend(term_id(t) for t in tokens)
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
    terms = np.asarray(ids, dtype=np.int64)
    key = (rows << 32) | terms
    uniq, tf = np.unique(key, return_counts=True)
    return assemble("", uniq >> 32, uniq & 0xFFFFFFFF, tf.astype(np.float64), len(texts))
