"""A query's aggregations: GROUP BY some fields, then count/sum/avg/min/max per group (vectorised,
Arrow's hash aggregation).

Semantics, as Milvus has them: ``count(field)`` counts the rows where the field is not null and
``count(*)`` every row; ``sum``, ``avg``, ``min`` and ``max`` skip nulls and are null for a group
with no value; ``sum`` of integers is an int64, of floats a double; ``avg`` is always a double;
``min``/``max`` keep the field's type (VARCHAR compares by code point, TIMESTAMPTZ by instant).
Null grouping values form one group of their own. Groups come sorted by their keys (nulls last).
Without grouping fields the aggregations cover every matching row in one row, also when no row
matched (``count`` 0, the others null).
"""

from __future__ import annotations

import pyarrow as pa

from walvus.searcher import Aggregate

# walvus's function name -> Arrow's hash-aggregate function
ARROW_FUNCTION = {"count": "count", "sum": "sum", "avg": "mean", "min": "min", "max": "max"}


def aggregate(table: pa.Table, keys: list[str], aggregates: list[Aggregate]) -> pa.Table:
    """One row per distinct ``keys`` tuple: the keys, then one column per aggregate (its name)."""
    # positional names, so no field name can collide with Arrow's "<column>_<function>" outputs
    key_cols = {k: f"k{i}" for i, k in enumerate(keys)}
    sources = list(dict.fromkeys(a.field for a in aggregates if a.field is not None))
    src_cols = {f: f"a{i}" for i, f in enumerate(sources)}
    work = pa.table(
        [table.column(k) for k in keys] + [table.column(f) for f in sources],
        names=[*key_cols.values(), *src_cols.values()],
    )
    specs: list[tuple[str | list[str], str]] = []
    out_of: dict[tuple[str, str | None], str] = {}
    for a in aggregates:
        pair = (a.function, a.field)
        if pair in out_of:
            continue
        if a.field is None:
            specs.append(([], "count_all"))
            out_of[pair] = "count_all"
        else:
            fn = ARROW_FUNCTION[a.function]
            specs.append((src_cols[a.field], fn))
            out_of[pair] = f"{src_cols[a.field]}_{fn}"
    grouped = work.group_by(list(key_cols.values()), use_threads=False).aggregate(specs)
    if keys:
        grouped = grouped.sort_by([(k, "ascending") for k in key_cols.values()])
    columns = [grouped.column(key_cols[k]) for k in keys]
    columns += [grouped.column(out_of[(a.function, a.field)]) for a in aggregates]
    return pa.table(columns, names=[*keys, *(a.name for a in aggregates)])
