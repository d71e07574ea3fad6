"""Grouping search: the best groups of a field's values, each with up to ``group_size`` hits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from searcher.requests import empty_table, group_positions
from searcher.search import gather
from searcher.segment import Container
from walvus.searcher import Hits, SearchRequest

View = list[tuple[Container, np.ndarray]]
Neighbours = tuple[np.ndarray, np.ndarray, list[Container]]  # distances, flat refs, containers used


def grouped_hits(
    view: View,
    info: CollectionInfo,
    queries: np.ndarray,
    req: SearchRequest,
    cols: list[str],
    neighbours: Callable[[View, np.ndarray, int], Neighbours],
) -> list[Hits]:
    """The best ``limit`` groups (after ``offset`` groups) of ``group_by_field``, up to
    ``group_size`` hits each, groups ordered by their best hit and each group's hits together.

    The candidate list (``neighbours``: top-k, or the range) widens x4 until every query has its
    groups (filled to ``group_size`` when ``strict_group_size``) or every allowed row was a
    candidate.
    """
    group = req.group_by_field
    assert group is not None
    size = max(1, req.group_size)
    allowed = sum(c.count(m) for c, m in view)
    k = max(1, min(allowed, max(64, 4 * (req.offset + req.limit) * size)))
    out: list[Hits | None] = [None] * len(queries)
    todo = list(range(len(queries)))
    while todo:
        d, refs, used = neighbours(view, queries[todo], k)
        widen = []
        for j, qi in enumerate(todo):
            r = refs[j] if refs.shape[1] else np.zeros(0, np.int64)
            dist = d[j] if d.shape[1] else np.zeros(0, np.float32)
            keep = r >= 0
            r, dist = r[keep], dist[keep]
            values: list[Any] = gather(used, r, [group])[1].column(group).to_pylist() if len(r) else []
            pos, complete = group_positions(values, req.limit, req.offset, size, req.strict_group_size)
            if not complete and len(r) >= k and k < allowed:
                widen.append(qi)
                continue
            sel = np.asarray(pos, dtype=np.int64)
            r, dist = r[sel], dist[sel]
            pks, fields = (
                gather(used, r, cols)
                if len(r)
                else (pa.array([], info.schema.primary.arrow_type()), empty_table(info, cols))
            )
            if req.round_decimal >= 0:
                dist = np.round(dist, req.round_decimal)
            out[qi] = Hits(pks.to_pylist(), dist.astype(np.float32), fields)
        todo = widen
        k = min(allowed, k * 4)
    return [h for h in out if h is not None]
