"""An exact inverted index over one container's sparse rows: IP and BM25 scoring, vectorised.

The rows' (dimension, row, value) entries are sorted by dimension once, so a query's posting
lists are found with ``searchsorted`` and scored with one ``bincount`` per query: no per-row
Python. Only rows sharing a dimension with the query are candidates (as in Milvus, a sparse
search never returns a row with no common dimension).

BM25 (Milvus's form): for query term t with query frequency q_t,
``score(d) = sum_t q_t * idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))``
with ``idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))``; N, df and avgdl are counted over the
collection's live rows (``Bm25Stats``), so deletes and upserts change them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.sparse import SparseQuery, flat_parts


@dataclass(frozen=True)
class Bm25Stats:
    """Live statistics of a collection for one query's terms."""

    num_docs: int
    avgdl: float
    df: np.ndarray  # per query term

    def idf(self) -> np.ndarray:
        n = float(self.num_docs)
        return np.log1p((n - self.df + 0.5) / (self.df + 0.5))


class SparseIndex:
    """Postings of one container's sparse column, sorted by dimension."""

    def __init__(
        self, column: pa.Array | pa.ChunkedArray, num_rows: int, drop_ratio_build: float = 0.0
    ) -> None:
        rows, idx, val = flat_parts(column)
        self.num_rows = num_rows
        self.doc_len = np.bincount(rows, weights=val, minlength=num_rows).astype(np.float64)
        if drop_ratio_build > 0 and len(val):
            # Milvus: the smallest drop_ratio_build share of the values is left out of the index
            cut = np.quantile(np.abs(val), drop_ratio_build)
            keep = np.abs(val) >= cut
            rows, idx, val = rows[keep], idx[keep], val[keep]
        order = np.argsort(idx, kind="stable")
        self.terms, self.rows, self.vals = idx[order], rows[order], val[order].astype(np.float32)
        self._len_cache: tuple[np.ndarray, float] | None = None

    def postings(self, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry positions, which query term each is) of the given (sorted, unique) terms."""
        lo = np.searchsorted(self.terms, terms, "left")
        hi = np.searchsorted(self.terms, terms, "right")
        lens = hi - lo
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        which = np.repeat(np.arange(len(terms)), lens)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return starts + np.arange(total), which

    def live_length(self, alive: np.ndarray) -> float:
        """Sum of the live rows' lengths (cached per live bitmap: it is replaced, never changed)."""
        cached = self._len_cache
        if cached is None or cached[0] is not alive:
            cached = self._len_cache = (alive, float(self.doc_len[alive].sum()))
        return cached[1]

    def doc_freq(self, terms: np.ndarray, alive: np.ndarray) -> np.ndarray:
        pos, which = self.postings(terms)
        return np.bincount(which, weights=alive[self.rows[pos]], minlength=len(terms))

    def scores(
        self, query: SparseQuery, stats: Bm25Stats | None = None, k1: float = 1.2, b: float = 0.75
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rows, their scores): IP, or BM25 when ``stats`` are given."""
        terms, qvals = query
        pos, which = self.postings(terms)
        if len(pos) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows, tf = self.rows[pos], self.vals[pos].astype(np.float64)
        if stats is None:
            contrib = tf * qvals[which]
        else:
            norm = k1 * (1.0 - b + b * self.doc_len[rows] / max(stats.avgdl, 1e-12))
            contrib = (qvals[which] * stats.idf()[which]) * tf * (k1 + 1.0) / (tf + norm)
        if len(rows) * 16 > self.num_rows:  # long posting lists: one pass over the rows, no sort
            hits = np.bincount(rows, minlength=self.num_rows)
            cand = np.flatnonzero(hits)
            return cand, np.bincount(rows, weights=contrib, minlength=self.num_rows)[cand].astype(np.float32)
        cand, inverse = np.unique(rows, return_inverse=True)
        return cand, np.bincount(inverse, weights=contrib, minlength=len(cand)).astype(np.float32)

    def search(
        self,
        queries: list[SparseQuery],
        k: int,
        allowed: np.ndarray | None,
        stats: list[Bm25Stats] | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        bounds: tuple[float, float | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, row labels) per query, larger is better; missing slots -inf / -1.

        ``bounds`` (radius, range_filter) keeps only scores in ``(radius, range_filter]`` (range search).
        """
        out_d = np.full((len(queries), k), -np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        for qi, query in enumerate(queries):
            rows, sc = self.scores(query, None if stats is None else stats[qi], k1, b)
            if allowed is not None and len(rows):
                keep = allowed[rows]
                rows, sc = rows[keep], sc[keep]
            if bounds is not None and len(rows):
                keep = sc > bounds[0] if bounds[1] is None else (sc > bounds[0]) & (sc <= bounds[1])
                rows, sc = rows[keep], sc[keep]
            if not len(rows):
                continue
            kk = min(k, len(rows))
            part = np.argpartition(-sc, kk - 1)[:kk] if kk < len(rows) else np.arange(len(rows))
            best = part[np.lexsort((rows[part], -sc[part]))]
            out_d[qi, :kk], out_i[qi, :kk] = sc[best], rows[best]
        return out_d, out_i
