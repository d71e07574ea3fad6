"""TEXT_MATCH and PHRASE_MATCH over VARCHAR fields with ``enable_match=True``.

A column's texts are tokenised once by the field's analyzer into flat postings (row, term id,
position), cached while the column lives (keyed by its chunks' buffers, so a
table's column is tokenised once, not at every search); then both predicates are numpy set operations:

- ``TEXT_MATCH(f, "a b")``: rows holding any of the query's tokens (Milvus's OR semantics);
- ``PHRASE_MATCH(f, "a b c", slop)``: rows holding the query's tokens in order, where the gaps
  between consecutive ones add up to at most ``slop`` (0: adjacent). A token's position is its
  index among the analyzer's output tokens (after stop words are removed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from schemas.analyzer import build_analyzer, term_id

from . import ir

if TYPE_CHECKING:
    from lark import Tree

    from .compiler import Compiler

_CACHE: OrderedDict[tuple[Any, ...], tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
_CACHE_SIZE = 256
_lock = threading.Lock()


def query_terms(analyzer_params: str, text: str) -> tuple[int, ...]:
    return tuple(term_id(t) for t in build_analyzer(analyzer_params or None).tokens(text))


def _postings(
    column: pa.Array | pa.ChunkedArray, analyzer_params: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, term, position) of every token of the column, sorted by term; cached per column."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    key = (
        analyzer_params,
        tuple(
            (tuple(b.address if b is not None else 0 for b in c.buffers()), c.offset, len(c)) for c in chunks
        ),
    )
    with _lock:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit[1], hit[2], hit[3]
    analyzer = build_analyzer(analyzer_params or None)
    texts = column.to_pylist()
    counts = np.zeros(len(texts), np.int64)
    ids: list[int] = []
    for i, text in enumerate(texts):
        if text:
            tokens = analyzer.tokens(text)
            counts[i] = len(tokens)
            ids.extend(term_id(t) for t in tokens)
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.arange(len(rows), dtype=np.int64) - starts
    terms = np.asarray(ids, dtype=np.int64)
    order = np.argsort(terms, kind="stable")
    out = (rows[order], terms[order], pos[order])
    with _lock:
        _CACHE[key] = (column, *out)  # the column keeps its buffers (and so the key) alive
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return out


def _entries(terms_sorted: np.ndarray, term: int) -> slice:
    return slice(
        int(np.searchsorted(terms_sorted, term, "left")), int(np.searchsorted(terms_sorted, term, "right"))
    )


def text_match(
    column: pa.Array | pa.ChunkedArray, analyzer_params: str, terms: tuple[int, ...]
) -> np.ndarray:
    rows, tsorted, _ = _postings(column, analyzer_params)
    hit = np.zeros(len(column), bool)
    if terms:
        sel = np.isin(tsorted, np.asarray(terms, dtype=np.int64))
        hit[rows[sel]] = True
    return hit


def phrase_match(
    column: pa.Array | pa.ChunkedArray, analyzer_params: str, terms: tuple[int, ...], slop: int
) -> np.ndarray:
    rows, tsorted, pos = _postings(column, analyzer_params)
    hit = np.zeros(len(column), bool)
    if not terms:
        return hit
    first = _entries(tsorted, terms[0])
    # partial matches: row, position of the last matched token, gaps used so far
    row, end, gaps = rows[first], pos[first], np.zeros(first.stop - first.start, np.int64)
    for term in terms[1:]:
        if len(row) == 0:
            return hit
        sl = _entries(tsorted, term)
        # join the partial matches with the term's occurrences in the same row
        order = np.argsort(rows[sl], kind="stable")
        n_row, n_pos = rows[sl][order], pos[sl][order]
        lo = np.searchsorted(n_row, row, "left")
        counts = np.searchsorted(n_row, row, "right") - lo
        left = np.repeat(np.arange(len(row)), counts)
        right = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(len(left))
        nxt = n_pos[right]
        step = gaps[left] + nxt - end[left] - 1
        ok = (nxt > end[left]) & (step <= slop)
        kept = np.unique(np.stack([row[left][ok], nxt[ok], step[ok]]), axis=1)
        row, end, gaps = kept[0], kept[1], kept[2]
    hit[row] = True
    return hit


def compile_match(compiler: Compiler, name: str, t: Tree) -> ir.Pred:
    """TEXT_MATCH(field, text) / PHRASE_MATCH(field, text[, slop]) as IR; the text is tokenised now."""
    from .compiler import describe

    args = t.children[1:]
    want = "2 arguments" if name == "text_match" else "2 or 3 arguments"
    if not (len(args) == 2 or (name == "phrase_match" and len(args) == 3)):
        raise compiler.error(f"{name}() takes {want}, got {len(args)}", t)
    target = compiler.value(args[0])
    field = compiler.schema.fields.get(target.name) if isinstance(target, ir.Field) else None
    if field is None or field.type.upper() != "VARCHAR":
        raise compiler.error(f"{name}() needs a VARCHAR field, got {describe(target)}", args[0])
    if field.match_analyzer is None:
        raise compiler.error(f"{name}() needs field '{field.name}' to have enable_match=True", args[0])
    text = compiler.value(args[1])
    if not isinstance(text, ir.Const) or text.ctype != "str":
        raise compiler.error(f"{name}() needs a string to match, got {describe(text)}", args[1])
    slop = 0
    if len(args) == 3:
        slop_v = compiler.value(args[2])
        if not isinstance(slop_v, ir.Const) or slop_v.ctype != "int" or not 0 <= slop_v.value < 2**31:
            raise compiler.error(
                f"phrase_match() slop must be a non-negative integer, got {describe(slop_v)}", args[2]
            )
        slop = int(slop_v.value)
    terms = query_terms(field.match_analyzer, text.value)
    return ir.TextMatch(target, field.match_analyzer, terms, name == "phrase_match", slop)
