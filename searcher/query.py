"""Query, get and count(*) over a loaded collection's live rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.collection import META_FIELD
from schemas.filters import CompiledFilter
from schemas.scalar_index import ScalarSource
from searcher.search import container_mask
from searcher.segment import Container

COUNT = "count(*)"


def query_rows(
    view: list[tuple[Container, np.ndarray]],
    pk_name: str,
    flt: CompiledFilter | None,
    ids: list[Any] | None,
    partitions: list[str] | None,
    columns: list[str],
    limit: int | None,
    offset: int,
    count_only: bool,
    sources: frozenset[ScalarSource] = frozenset(),
) -> tuple[pa.Table | int, int]:
    """Matching live rows (sorted by primary key when limited), or their count. Also rows examined."""
    parts: list[pa.Table] = []
    total = 0
    scanned = 0
    need = None if limit is None else offset + limit
    id_set = pa.array(ids) if ids is not None else None
    for c, alive in view:
        mask = alive
        if id_set is not None:
            mask = mask & pc.is_in(c.pks, value_set=id_set.cast(c.pks.type)).to_numpy(zero_copy_only=False)
        if not mask.any():
            continue
        scanned += c.num_rows
        mask = container_mask(c, mask, flt, partitions, sources)
        if count_only:
            total += int(np.count_nonzero(mask))
            continue
        if mask.any():
            cols = list(dict.fromkeys([pk_name, *columns]))
            rows = np.flatnonzero(mask)
            if need is not None and len(rows) > need:  # only the smallest keys can make the page
                rows = rows[_smallest(c.pks.take(pa.array(rows)), need)]
            parts.append(c.take_columns(cols, rows))
    if count_only:
        return total, scanned
    if not parts:
        return pa.table({}), scanned
    table = pa.concat_tables(parts, promote_options="default")
    if limit is not None or offset:
        table = table.sort_by(pk_name)
        table = table.slice(offset, limit if limit is not None else None)
    return table, scanned


def _smallest(keys: pa.Array, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest keys (any order)."""
    if pa.types.is_integer(keys.type):
        return np.argpartition(keys.to_numpy(zero_copy_only=False), k - 1)[:k]
    return pc.select_k_unstable(keys, k=k, sort_keys=[("key", "ascending")]).to_numpy(zero_copy_only=False)


def output_columns(schema: Any, requested: list[str]) -> tuple[list[str], list[str]]:
    """Expand ``*`` and split requested names into stored columns and dynamic keys."""
    names = [f.name for f in schema.fields]
    cols: list[str] = []
    dynamic: list[str] = []
    for name in requested:
        if name == "*":
            cols += [n for n in names if n not in cols]
            if schema.enable_dynamic_field and META_FIELD not in cols:
                cols.append(META_FIELD)
        elif name == COUNT:
            continue
        elif name in names or name == META_FIELD:
            if name not in cols:
                cols.append(name)
        elif schema.enable_dynamic_field:
            dynamic.append(name)
            if META_FIELD not in cols:
                cols.append(META_FIELD)
        else:
            from schemas.exceptions import InvalidArgument

            raise InvalidArgument(f"field {name} not exist: output field is not in the collection schema")
    return cols, dynamic
