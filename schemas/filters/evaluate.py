"""Vectorised evaluation of the filter IR over a pyarrow Table, with SQL three-valued logic.

A predicate evaluates to a :class:`Tri`: ``val`` (True rows) and ``valid`` (non-null rows; ``None``
means all).  ``and``/``or``/``not`` follow Kleene logic, so a null row stays null under ``not`` and
is dropped at the end, as Milvus drops rows whose nullable field is null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.timestamptz import shift  # noqa: E402

from . import ir, json_paths
from . import values as V
from .errors import FilterError
from .schema import META
from .text_match import phrase_match, text_match

_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "time": pa.int64(),
}


class Tri:
    """A three-valued boolean vector; ``val`` is False wherever ``valid`` is False."""

    __slots__ = ("val", "valid")

    def __init__(self, val: np.ndarray, valid: V.Mask = None) -> None:
        self.val = val if valid is None else val & valid
        self.valid = valid


def tri_and(a: Tri, b: Tri) -> Tri:
    if a.valid is None and b.valid is None:
        return Tri(a.val & b.val)
    va = a.valid if a.valid is not None else np.ones_like(a.val)
    vb = b.valid if b.valid is not None else np.ones_like(b.val)
    return Tri(a.val & b.val, (va & vb) | (va & ~a.val) | (vb & ~b.val))


def tri_or(a: Tri, b: Tri) -> Tri:
    if a.valid is None and b.valid is None:
        return Tri(a.val | b.val)
    return Tri(a.val | b.val, V.mask_and(a.valid, b.valid) | a.val | b.val)


def tri_not(a: Tri) -> Tri:
    return Tri(~a.val, a.valid)


class Context:
    """One evaluation over one table: column loading and JSON parsing are cached here."""

    def __init__(self, table: pa.Table, expr: str, paths: Mapping[str, set[tuple]] | None = None) -> None:
        self.table = table
        self.expr = expr
        self.paths = paths or {}  # every JSON path the filter reads, by column: one decoding pass each
        self.n = table.num_rows
        self._cache: dict[Any, Any] = {}

    def column(self, name: str, missing_type: pa.DataType | None) -> pa.Array:
        if name not in self.table.column_names:
            if missing_type is None:
                raise FilterError(self.expr, f"column '{name}' is missing from the table")
            return pa.nulls(self.n, missing_type)
        col = self.table.column(name)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        return arr

    def field(self, node: ir.Field) -> Any:
        key = ("field", node.name)
        if key not in self._cache:
            arr = self.column(node.name, _ARROW_TYPES[node.ctype] if node.nullable else None)
            valid = _valid(arr)
            if node.ctype == "time":  # TIMESTAMPTZ: compared as microseconds since the epoch
                arr = arr.cast(pa.int64())
            if node.ctype == "str":
                self._cache[key] = V.StrV(arr, valid)
            else:
                elem = V.elements(arr, "int" if node.ctype == "time" else node.ctype)
                elem.rowvalid = valid
                self._cache[key] = elem
        return self._cache[key]

    def json(self, node: ir.JsonPath) -> V.JsonV:
        key = ("json", node.column, node.path)
        if key not in self._cache:
            paths = sorted(self.paths.get(node.column, set()) | {node.path}, key=repr)
            arr = self.column(node.column, pa.string())
            valid = _valid(arr) if node.column != META else None
            for path, items in zip(paths, json_paths.extract_paths(arr, paths), strict=True):
                self._cache["json", node.column, path] = V.JsonV(items, valid)
        return self._cache[key]

    def array(self, node: ir.ArrayField) -> V.ArrV:
        key = ("array", node.name)
        if key not in self._cache:
            missing = pa.list_(_ARROW_TYPES[node.elem]) if node.nullable else None
            arr = self.column(node.name, missing)
            self._cache[key] = V.ArrV(arr, node.elem, _valid(arr))
        return self._cache[key]


def _valid(arr: pa.Array) -> V.Mask:
    return arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None


def json_paths_of(node: Any) -> dict[str, set[tuple]]:
    """The JSON paths an IR tree reads, by column."""
    out: dict[str, set[tuple]] = {}
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ir.JsonPath):
            out.setdefault(cur.column, set()).add(cur.path)
        stack.extend(ir.children(cur))
    return out


def evaluate(
    node: ir.Pred, table: pa.Table, expr: str, paths: Mapping[str, set[tuple]] | None = None
) -> np.ndarray:
    """The rows of ``table`` for which ``node`` is True (null counts as False)."""
    ctx = Context(table, expr, paths if paths is not None else json_paths_of(node))
    return np.asarray(pred(node, ctx).val, dtype=bool)


def pred(node: ir.Pred, ctx: Context) -> Tri:
    """Evaluate a predicate node."""
    if isinstance(node, ir.BoolConst):
        return Tri(np.full(ctx.n, node.value, dtype=bool))
    if isinstance(node, ir.And | ir.Or):
        combine = tri_and if isinstance(node, ir.And) else tri_or
        result = pred(node.items[0], ctx)
        for item in node.items[1:]:
            result = combine(result, pred(item, ctx))
        return result
    if isinstance(node, ir.Not):
        return tri_not(pred(node.item, ctx))
    if isinstance(node, ir.Cmp):
        return _compare(node, ctx)
    v = value(node.operand, ctx)
    valid = V.rowvalid(v)
    if isinstance(node, ir.InList):
        return Tri(V.in_list(v, node.values, ctx.n), valid)
    if isinstance(node, ir.Like):
        return Tri(V.like(V.project(v, "str"), node.pattern), valid)
    if isinstance(node, ir.IsNull):
        return Tri(_is_null(v))
    if isinstance(node, ir.Exists):
        return Tri(json_paths.exists_mask(v.items))
    if isinstance(node, ir.Contains):
        if isinstance(v, V.ArrV):
            return Tri(V.array_hits(v, node.values, node.mode, ctx.n), valid)
        return Tri(V.json_hits(v, node.values, node.mode, ctx.n), valid)
    if isinstance(node, ir.TextMatch):
        name = node.operand.name
        col = ctx.table.column(name) if name in ctx.table.column_names else ctx.column(name, pa.string())
        if node.phrase:
            return Tri(phrase_match(col, node.analyzer, node.terms, node.slop), valid)
        return Tri(text_match(col, node.analyzer, node.terms), valid)
    if isinstance(node, ir.Truth):
        b = V.project(v, "bool")
        return Tri(b.values if b.present is None else b.values & b.present, valid)
    raise TypeError(f"unknown predicate {node!r}")  # pragma: no cover


def _compare(node: ir.Cmp, ctx: Context) -> Tri:
    left, right = value(node.left, ctx), value(node.right, ctx)
    valid = V.mask_and(V.rowvalid(left), V.rowvalid(right))
    op = "==" if node.op == "!=" else node.op
    if isinstance(right, tuple):
        if isinstance(left, V.ArrV):
            res = V.array_equals(left, right)
        else:
            res = json_paths.equals(left.items, right)
    else:
        res = np.zeros(ctx.n, bool)
        for kind in ("num", "str") if op != "==" else ("num", "str", "bool"):
            lk, rk = V.project(left, kind), V.project(right, kind)
            if lk is not None and rk is not None:
                res |= V.compare_kind(kind, op, lk, rk)
        if op == "==" and isinstance(left, V.JsonV) and isinstance(right, V.JsonV):
            res |= json_paths.containers_equal(left.items, right.items)
    return Tri(~res if node.op == "!=" else res, valid)


def _is_null(v: Any) -> np.ndarray:
    if isinstance(v, V.JsonV):
        return json_paths.null_mask(v.items)
    if isinstance(v, V.StrV):
        return v.arr.is_null().to_numpy(zero_copy_only=False)
    if isinstance(v, V.ArrV):
        return v.arr.is_null().to_numpy(zero_copy_only=False)
    present = v.present if v.present is not None else v.rowvalid
    return np.zeros(len(v.values), bool) if present is None else ~present


def value(node: ir.Value, ctx: Context) -> Any:
    """Evaluate a value node: a Python constant or one of the runtime vectors of ``values``."""
    if isinstance(node, ir.Const):
        return node.value
    if isinstance(node, ir.Field):
        return ctx.field(node)
    if isinstance(node, ir.JsonPath):
        return ctx.json(node)
    if isinstance(node, ir.ArrayField):
        return ctx.array(node)
    if isinstance(node, ir.ArrayElem):
        return V.array_element(ctx.array(node.array), node.index)
    if isinstance(node, ir.ArrayLength):
        return V.array_lengths(value(node.operand, ctx))
    if isinstance(node, ir.Arith):
        left = V.project(value(node.left, ctx), "num")
        right = V.project(value(node.right, ctx), "num")
        return V.arith(node.op, left, right)
    if isinstance(node, ir.TimeShift):
        v = V.project(value(node.operand, ctx), "num")
        return V.NumV(shift(v.values, node.months, node.micros), v.present, v.rowvalid)
    if isinstance(node, ir.Neg):
        return V.negate(V.project(value(node.operand, ctx), "num"))
    raise TypeError(f"unknown value {node!r}")  # pragma: no cover
