"""Milvus boolean filter expressions: parse (lark, LALR), type-check, evaluate vectorised.

>>> schema = FilterSchema.of([FilterField("age", "INT64"), FilterField("name", "VARCHAR")])
>>> flt = compile_filter('age > 30 and name like "a%"', schema)
>>> flt.evaluate(table)  # numpy bool mask, one entry per row  # doctest: +SKIP

Modules: ``grammar`` (syntax), ``compiler`` (names, types, constants), ``ir`` (the compiled form),
``evaluate``/``values`` (vectorised evaluation), ``json_paths`` (JSON documents).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from . import ir
from .compiler import Compiler
from .errors import FilterError
from .evaluate import evaluate as _evaluate
from .evaluate import json_paths_of
from .grammar import parse
from .schema import FilterField, FilterSchema, filter_view

__all__ = ["CompiledFilter", "FilterError", "FilterField", "FilterSchema", "compile_filter", "filter_view"]


class CompiledFilter:
    """A type-checked filter, reusable over any number of tables of the same schema."""

    __slots__ = ("expr", "root", "fields", "_json_paths")

    def __init__(self, expr: str, root: ir.Pred) -> None:
        self.expr = expr
        self.root = root
        #: schema columns the evaluation reads (``$meta`` when dynamic fields are referenced)
        self.fields: frozenset[str] = frozenset(_columns(root))
        self._json_paths = json_paths_of(root)

    @property
    def matches_all(self) -> bool:
        """True when the filter is empty or constant-true (no column needs reading)."""
        return isinstance(self.root, ir.BoolConst) and self.root.value

    def evaluate(self, table: pa.Table) -> np.ndarray:
        """A bool mask with one entry per row of ``table``; rows where the expression is null are False."""
        if isinstance(self.root, ir.BoolConst):
            return np.full(table.num_rows, self.root.value, dtype=bool)
        return _evaluate(self.root, table, self.expr, self._json_paths)

    def values_for(self, field: str) -> frozenset | None:
        """The finite set of values ``field`` must take for the whole expression to hold, or None.

        Derived from ``==``, ``in`` and their ``and``/``or`` combinations on a scalar schema field,
        e.g. for partition-key pruning or primary-key lookups.
        """
        return _values_for(self.root, field)

    def __repr__(self) -> str:
        return f"CompiledFilter({self.expr!r})"


def compile_filter(
    expr: str, schema: FilterSchema, params: Mapping[str, Any] | None = None
) -> CompiledFilter:
    """Parse and type-check ``expr`` against ``schema``; ``params`` fill ``{name}`` placeholders.

    An empty or blank expression matches every row.  Raises :class:`FilterError` for syntax errors,
    unknown fields or template parameters, and ill-typed operations.
    """
    if expr is None or not expr.strip():
        return CompiledFilter(expr or "", ir.BoolConst(True))
    tree = parse(expr)
    try:
        return CompiledFilter(expr, Compiler(expr, schema, params).pred(tree))
    except RecursionError:
        raise FilterError(expr, "expression nested too deeply") from None


def _columns(node: Any) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ir.Field | ir.ArrayField):
            out.add(cur.name)
        elif isinstance(cur, ir.JsonPath):
            out.add(cur.column)
        stack.extend(ir.children(cur))
    return out


def _values_for(node: ir.Pred, field: str) -> frozenset | None:
    if isinstance(node, ir.Cmp):
        if node.op == "==" and _is_field(node.left, field) and isinstance(node.right, ir.Const):
            return _normalize(node.left, (node.right.value,))
        return None
    if isinstance(node, ir.InList):
        return _normalize(node.operand, node.values) if _is_field(node.operand, field) else None
    if isinstance(node, ir.And):
        sets = [s for s in (_values_for(i, field) for i in node.items) if s is not None]
        return frozenset.intersection(*sets) if sets else None
    if isinstance(node, ir.Or):
        sets = [_values_for(i, field) for i in node.items]
        return None if any(s is None for s in sets) else frozenset().union(*sets)
    if isinstance(node, ir.BoolConst) and not node.value:
        return frozenset()
    return None


def _is_field(node: ir.Value, field: str) -> bool:
    return isinstance(node, ir.Field) and node.name == field


def _normalize(node: ir.Field, values: tuple[Any, ...]) -> frozenset:
    """The constants as values of the field's type; constants the field can never equal are dropped."""
    if node.ctype == "int":
        return frozenset(int(v) for v in values if type(v) is int or float(v).is_integer())
    if node.ctype == "float":
        return frozenset(float(v) for v in values)
    return frozenset(values)
