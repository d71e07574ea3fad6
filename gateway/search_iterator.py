"""Search iterator v2: one page of results strictly after the last page's bound.

The bound becomes a ``range_filter``; hits tied with it that the previous page already returned
are remembered under the iterator's token (the most recent ``MAX_ITERATORS`` tokens) and skipped.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pyarrow as pa

from gateway.params import as_int
from schemas.catalog import CollectionInfo
from schemas.exceptions import InvalidArgument
from schemas.index_spec import is_similarity
from schemas.types import DataType
from walvus.searcher import Hits, Searcher, SearchRequest

MAX_ITERATORS = 4096


class SearchPages:
    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self._states: OrderedDict[str, tuple[float, frozenset]] = OrderedDict()
        self._lock = threading.Lock()

    def page(
        self, info: CollectionInfo, s: SearchRequest, kv: dict[str, str]
    ) -> tuple[Hits, int, str, float]:
        """The page's hits, its batch size, the iterator's token and the page's last bound."""
        if len(s.queries) != 1:
            raise InvalidArgument("search_iterator_v2 supports only one query vector")
        token = kv.get("search_iter_id") or uuid.uuid4().hex
        batch = as_int(kv, "search_iter_batch_size", s.limit)
        field = info.schema.field(s.anns_field or "")
        metric = s.metric or (
            "HAMMING" if field is not None and field.dtype == DataType.BINARY_VECTOR else "COSINE"
        )
        larger = is_similarity(metric)
        bound_raw = kv.get("search_iter_last_bound")
        seen: frozenset = frozenset()
        if bound_raw:
            bound = float(np.float32(float(bound_raw)))
            with self._lock:
                state = self._states.get(token)
            if state is not None and state[0] == bound:
                seen = state[1]
            params = dict(s.params)
            user = params.get("range_filter")
            params["range_filter"] = bound if user is None else (min if larger else max)(float(user), bound)
            params.setdefault("radius", float("-inf") if larger else float("inf"))
            s = replace(s, params=params, limit=batch + len(seen), offset=0)
        else:  # a range search too (everything in range), so that every page computes distances
            # with the same kernel: a top-k kernel can differ by an ulp, and a row at the first
            # page's bound would fall between the pages
            params = dict(s.params)
            params.setdefault("radius", float("-inf") if larger else float("inf"))
            s = replace(s, params=params, limit=batch, offset=0)
        hit = self.searcher.search(s)[0]
        ids = hit.ids.tolist() if isinstance(hit.ids, np.ndarray) else list(hit.ids)
        dist = np.asarray(hit.distances, dtype=np.float32)
        keep = np.array([k not in seen for k in ids], dtype=bool) if seen else np.ones(len(ids), dtype=bool)
        idx = np.flatnonzero(keep)[:batch]
        fields = hit.fields.take(pa.array(idx, type=pa.int64())) if hit.fields.num_columns else hit.fields
        page = Hits([ids[i] for i in idx], dist[idx], fields)
        if len(idx):
            last = float(dist[idx[-1]])
            tied = {page.ids[i] for i in np.flatnonzero(page.distances == dist[idx[-1]])}
            if bound_raw and last == float(np.float32(float(bound_raw))):
                tied |= seen
        else:
            last = float(np.float32(float(bound_raw))) if bound_raw else 0.0
            tied = set(seen)
        with self._lock:
            self._states[token] = (last, frozenset(tied))
            self._states.move_to_end(token)
            while len(self._states) > MAX_ITERATORS:
                self._states.popitem(last=False)
        return page, batch, token, last


__all__ = ["MAX_ITERATORS", "SearchPages"]
