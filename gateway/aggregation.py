"""A query's GROUP BY and aggregations, read from its request as Milvus 2.6 takes them.

``group_by_fields`` (a query param, comma separated) names the grouping fields; ``output_fields``
then hold grouping fields and aggregations written ``function(field)``: ``count``, ``sum``,
``avg``, ``min`` and ``max`` in any letter case, ``count(*)`` counting rows. Each aggregation is
reported under the name the client wrote. Without ``group_by_fields``, aggregations alone in
``output_fields`` aggregate every matching row into one row. The searcher computes them
(``searcher/aggregation.py``); this module checks the request and says how to report each column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.field_data import type_name
from gateway.params import COUNT
from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument
from schemas.types import DataType
from walvus.searcher import Aggregate

FUNCTIONS = ("count", "sum", "avg", "min", "max")
_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\(\s*([^()]*?)\s*\)\s*")
_GROUPABLE = frozenset(
    {
        DataType.BOOL,
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.VARCHAR,
        DataType.TIMESTAMPTZ,
    }
)
_ORDERED = frozenset({DataType.VARCHAR, DataType.TIMESTAMPTZ})  # min/max beyond numbers


@dataclass
class GroupingPlan:
    """The grouping fields, the aggregations, and the output columns in the client's order."""

    group_by: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # grouping fields among the output fields
    aggregates: list[Aggregate] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sources: dict[str, FieldSchema | None] = field(default_factory=dict)  # name -> field to report as


def is_aggregation(name: str) -> bool:
    return "(" in name or ")" in name


def grouping_plan(
    schema: CollectionSchema, output_fields: list[str], group_by: list[str]
) -> GroupingPlan | None:
    """The plan of a grouping or aggregating query; None for a plain query (or a lone ``count(*)``)."""
    names = [n.strip() for n in output_fields if n.strip()]
    calls = [n for n in names if is_aggregation(n)]
    lone_count = len(names) == 1 and names[0].replace(" ", "").lower() == COUNT
    if not group_by and (not calls or lone_count):
        return None
    plan = GroupingPlan(group_by=list(group_by))
    for g in group_by:
        f = schema.field(g)
        if f is None:
            raise InvalidArgument(f"group_by_fields: field {g} not exist (grouping works on schema fields)")
        if f.dtype not in _GROUPABLE:
            raise InvalidArgument(f"group by field {g} has unsupported data type {type_name(int(f.dtype))}")
    for name in dict.fromkeys(names):
        if is_aggregation(name):
            agg, source = _aggregate(schema, name)
            plan.aggregates.append(agg)
            plan.sources[name] = source
        elif name in group_by:
            plan.keys.append(name)
            plan.sources[name] = schema.field(name)
        else:
            raise InvalidArgument(
                f"output field '{name}' is not allowed: with group_by_fields or aggregations, "
                f"output fields are grouping fields ({', '.join(group_by) or 'none'}) and "
                f"aggregations such as count(field), sum(field), avg(field), min(field), max(field)"
            )
        plan.names.append(name)
    return plan


def _aggregate(schema: CollectionSchema, name: str) -> tuple[Aggregate, FieldSchema | None]:
    """One ``function(field)`` output: the aggregation, and the field its values are reported as
    (min/max keep the field's type; counts, sums and averages are computed numbers)."""
    m = _CALL.fullmatch(name)
    if m is None:
        raise InvalidArgument(
            f"invalid output field {name!r}: an aggregation is written function(field), e.g. count(c2)"
        )
    fn, arg = m.group(1).lower(), m.group(2)
    if fn not in FUNCTIONS:
        raise InvalidArgument(
            f"unsupported aggregation function {m.group(1)!r} in {name!r}: supported are "
            f"{', '.join(FUNCTIONS)}"
        )
    if not arg:
        raise InvalidArgument(f"aggregation {name!r} names no field: write {fn}(field)")
    if arg == "*":
        if fn != "count":
            raise InvalidArgument(f"{name!r} is not supported: only count(*) takes *")
        return Aggregate("count", None, name), None
    f = schema.field(arg)
    if f is None:
        raise InvalidArgument(f"field {arg} not exist: aggregations work on schema fields ({name!r})")
    numeric = f.dtype.is_numeric
    allowed = (
        f.dtype in _GROUPABLE or numeric
        if fn == "count"
        else numeric or (fn in ("min", "max") and f.dtype in _ORDERED)
    )
    if not allowed:
        raise InvalidArgument(
            f"aggregation operator {fn} does not support data type {type_name(int(f.dtype))} (field {arg})"
        )
    return Aggregate(fn, arg, name), (f if fn in ("min", "max") else None)
