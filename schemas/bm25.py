"""BM25 function: text into term-frequency sparse vectors, at insert and at search.

A document's vector has one dimension per distinct token: the token's 32-bit MurmurHash3
(``schemas.analyzer.term_id``), valued with how often the token occurs. No vocabulary is kept:
the hash is the term id. Document length is the sum of the values. A field with
``multi_analyzer_params`` analyzes each row with the analyzer its ``by_field`` value names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from schemas.analyzer import TextAnalyzer, analyzer_for_field, term_id
from schemas.collection import FieldSchema
from schemas.multi_analyzer import multi_analyzer_for_field
from schemas.sparse import assemble


def term_frequencies(analyzer: TextAnalyzer, texts: Sequence[str | None]) -> pa.StructArray:
    """The stored sparse column of ``texts`` (null text: an empty vector)."""
    return tokens_to_sparse(analyzer.tokens_of(texts))


def field_term_frequencies(
    f: FieldSchema, texts: Sequence[str | None], columns: Mapping[str, pa.Array]
) -> pa.StructArray:
    """The BM25 column of input field ``f``'s ``texts``; ``columns`` holds the batch's other
    fields (a multi-analyzer field reads its ``by_field`` there)."""
    if not f.multi_analyzer_params:
        return term_frequencies(analyzer_for_field(f), texts)
    multi = multi_analyzer_for_field(f)
    return tokens_to_sparse(multi.tokens_of(texts, columns[multi.by_field]))


def tokens_to_sparse(token_lists: Sequence[list[str]]) -> pa.StructArray:
    counts = np.fromiter((len(t) for t in token_lists), np.int64, len(token_lists))
    ids = np.fromiter((term_id(t) for tokens in token_lists for t in tokens), np.int64, int(counts.sum()))
    rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), counts)
    key = (rows << 32) | ids
    uniq, tf = np.unique(key, return_counts=True)
    return assemble("", uniq >> 32, uniq & 0xFFFFFFFF, tf.astype(np.float64), len(token_lists))
