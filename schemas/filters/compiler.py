"""Lark tree -> typed IR: name resolution against the schema, template substitution, type checks.

Constant sub-expressions are folded here, constants are moved to the right of comparisons, and
constants compared with FLOAT (float32) fields are rounded to float32 as Milvus does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from lark import Token, Tree

from schemas.exceptions import InvalidArgument  # noqa: E402
from schemas.timestamptz import parse_interval, parse_one, shift  # noqa: E402

from . import ir
from .consts import FLIP, fold_arith, fold_cmp, from_param, kind_of
from .errors import FilterError
from .grammar import decode_int, decode_string, position
from .ir import NUMERIC
from .schema import META, SCALAR_KINDS, VECTOR_TYPES, FilterSchema

_PRED_RULES = {"or_expr", "and_expr", "not_", "compare", "in_", "not_in", "like", "is_null"}
_PRED_RULES |= {"is_not_null", "exists"}
_CONTAINS = {
    "json_contains": "one",
    "array_contains": "one",
    "json_contains_all": "all",
    "array_contains_all": "all",
    "json_contains_any": "any",
    "array_contains_any": "any",
}
_ASC, _DESC = {"<", "<="}, {">", ">="}


class Compiler:
    """Compiles one parsed expression against one schema and parameter set."""

    def __init__(self, expr: str, schema: FilterSchema, params: Mapping[str, Any] | None) -> None:
        self.expr = expr
        self.schema = schema
        self.params = params or {}

    def error(self, reason: str, node: Tree | Token | None = None) -> FilterError:
        col = position(node) if node is not None else None
        return FilterError(self.expr, f"{reason} at column {col}" if col else reason, col)

    # ---------------------------------------------------------------- predicates
    def pred(self, t: Tree | Token) -> ir.Pred:
        if isinstance(t, Tree):
            handler = getattr(self, "_p_" + t.data, None)
            if handler is not None:
                return handler(t)
        return self._truth(self.value(t), t)

    def _truth(self, value: ir.Value, t: Tree | Token) -> ir.Pred:
        """A value used as a predicate: boolean constants, BOOL fields and JSON values."""
        if isinstance(value, ir.Const):
            if value.ctype == "bool":
                return ir.BoolConst(value.value)
        elif value.ctype in ("bool", "json"):
            return ir.Truth(value)
        raise self.error(f"{describe(value)} is not a boolean expression", t)

    def _p_or_expr(self, t: Tree) -> ir.Pred:
        items: list[ir.Pred] = []
        for child in map(self.pred, t.children):
            if isinstance(child, ir.BoolConst):
                if child.value:
                    return child
                continue
            items.extend(child.items if isinstance(child, ir.Or) else [child])
        return ir.BoolConst(False) if not items else items[0] if len(items) == 1 else ir.Or(tuple(items))

    def _p_and_expr(self, t: Tree) -> ir.Pred:
        items: list[ir.Pred] = []
        for child in map(self.pred, t.children):
            if isinstance(child, ir.BoolConst):
                if not child.value:
                    return child
                continue
            items.extend(child.items if isinstance(child, ir.And) else [child])
        return ir.BoolConst(True) if not items else items[0] if len(items) == 1 else ir.And(tuple(items))

    def _p_not_(self, t: Tree) -> ir.Pred:
        inner = self.pred(t.children[0])
        if isinstance(inner, ir.BoolConst):
            return ir.BoolConst(not inner.value)
        return inner.item if isinstance(inner, ir.Not) else ir.Not(inner)

    def _p_compare(self, t: Tree) -> ir.Pred:
        operands = [self.value(c) for c in t.children[0::2]]
        ops = [str(op) for op in t.children[1::2]]
        if len(ops) == 1:
            return self.compare(ops[0], operands[0], operands[1], t.children[1])
        if len(ops) > 2 or not (set(ops) <= _ASC or set(ops) <= _DESC):
            raise self.error(
                "a chained comparison must be a range like 'a < x <= b' or 'a > x >= b'", t.children[3]
            )
        first = self.compare(ops[0], operands[0], operands[1], t.children[1])
        second = self.compare(ops[1], operands[1], operands[2], t.children[3])
        return _and(first, second)

    def compare(self, op: str, left: ir.Value, right: ir.Value, t: Tree | Token) -> ir.Pred:
        if isinstance(left, ir.Const) and not isinstance(right, ir.Const):
            left, right, op = right, left, FLIP[op]
        self._check_cmp(op, left, right, t)
        if isinstance(left, ir.Const):
            return ir.BoolConst(fold_cmp(op, left.value, right.value))
        if isinstance(right, ir.Const):
            right = _round_float32(left, right)
        return ir.Cmp(op, left, right)

    def _check_cmp(self, op: str, left: ir.Value, right: ir.Value, t: Tree | Token) -> None:
        cl, cr = left.ctype, right.ctype
        equality = op in ("==", "!=")
        if cl in NUMERIC and cr in NUMERIC or cl == cr == "str" or cl == cr == "time":
            return
        if cl == cr == "bool" or "json" in (cl, cr) and "bool" in (cl, cr):
            if equality:
                return
            raise self.error(f"booleans only support == and !=, got '{op}'", t)
        if "json" in (cl, cr):
            other = cr if cl == "json" else cl
            if other in NUMERIC or other in ("str", "json") or other == "list" and equality:
                return
        if {cl, cr} == {"array", "list"} and equality:
            array, lst = (left, right) if cl == "array" else (right, left)
            for v in lst.value:
                self._check_element(array, v, t)
            return
        if cl == cr == "list" and equality:
            return
        raise self.error(f"cannot compare {describe(left)} with {describe(right)} using '{op}'", t)

    def _check_element(self, array: ir.ArrayField, v: Any, t: Tree | Token) -> None:
        if not _compatible(array.elem, v):
            raise self.error(
                f"{describe(ir.Const(v, kind_of(v)))} does not match the {array.elem_type} elements "
                f"of ARRAY field '{array.name}'",
                t,
            )

    def _p_in_(self, t: Tree, negate: bool = False) -> ir.Pred:
        operand, values = self.value(t.children[0]), self.value(t.children[1])
        if not isinstance(values, ir.Const) or values.ctype != "list":
            raise self.error(f"'in' needs a list of constants, got {describe(values)}", t.children[1])
        if isinstance(operand, ir.Const):
            found = any(fold_cmp("==", operand.value, v) for v in values.value)
            return ir.BoolConst(found != negate)
        if operand.ctype not in NUMERIC | {"str", "bool", "json", "time"}:
            raise self.error(f"'in' cannot be applied to {describe(operand)}", t)
        ctype = "num" if operand.ctype in NUMERIC else operand.ctype
        for v in values.value:
            if not _compatible(ctype, v) or isinstance(v, tuple):
                raise self.error(f"list element {v!r} does not match {describe(operand)}", t.children[1])
        items = tuple(_round_float32(operand, ir.Const(v, kind_of(v))).value for v in values.value)
        node = ir.InList(operand, items)
        return ir.Not(node) if negate else node

    def _p_not_in(self, t: Tree) -> ir.Pred:
        return self._p_in_(t, negate=True)

    def _p_like(self, t: Tree) -> ir.Pred:
        operand, pattern = self.value(t.children[0]), self.value(t.children[1])
        if not isinstance(pattern, ir.Const) or pattern.ctype != "str":
            raise self.error(f"'like' needs a string pattern, got {describe(pattern)}", t.children[1])
        if isinstance(operand, ir.Const) or operand.ctype not in ("str", "json"):
            raise self.error(f"'like' needs a VARCHAR or JSON operand, got {describe(operand)}", t)
        return ir.Like(operand, pattern.value)

    def _p_is_null(self, t: Tree, negate: bool = False) -> ir.Pred:
        operand = self.value(t.children[0])
        if not isinstance(operand, ir.Field | ir.JsonPath | ir.ArrayField | ir.ArrayElem):
            raise self.error(f"'is null' needs a field, got {describe(operand)}", t)
        node = ir.IsNull(operand)
        return ir.Not(node) if negate else node

    def _p_is_not_null(self, t: Tree) -> ir.Pred:
        return self._p_is_null(t, negate=True)

    def _p_exists(self, t: Tree) -> ir.Pred:
        operand = self.value(t.children[0])
        if not isinstance(operand, ir.JsonPath) or not operand.path:
            raise self.error(f"'exists' needs a JSON key such as f[\"key\"], got {describe(operand)}", t)
        return ir.Exists(operand)

    def _p_call(self, t: Tree) -> ir.Pred:
        name = str(t.children[0]).lower()
        if name in ("text_match", "phrase_match"):
            from .text_match import compile_match

            return compile_match(self, name, t)
        mode = _CONTAINS.get(name)
        if mode is None:
            return self._truth(self.value(t), t)
        args = [self.value(a) for a in t.children[1:]]
        if len(args) != 2:
            raise self.error(f"{name}() takes 2 arguments, got {len(args)}", t)
        target, arg = args
        if not isinstance(target, ir.ArrayField | ir.JsonPath):
            raise self.error(f"{name}() needs an ARRAY or JSON field, got {describe(target)}", t.children[1])
        if not isinstance(arg, ir.Const):
            raise self.error(f"{name}() needs a constant, got {describe(arg)}", t.children[2])
        if mode == "one":
            values: tuple[Any, ...] = (arg.value,)
        elif arg.ctype != "list":
            raise self.error(f"{name}() needs a list as second argument, got {describe(arg)}", t.children[2])
        else:
            values = arg.value
        if isinstance(target, ir.ArrayField):
            for v in values:
                self._check_element(target, v, t.children[2])
            if target.elem_type == "FLOAT":
                values = tuple(float(np.float32(v)) for v in values)
        return ir.Contains(mode, target, values)

    # ---------------------------------------------------------------- values
    def value(self, t: Tree | Token) -> ir.Value:
        if isinstance(t, Tree):
            if t.data in _PRED_RULES:
                raise self.error("expected a value, got a boolean expression", t)
            return getattr(self, "_v_" + t.data)(t)
        raise self.error(f"unexpected {t!r}", t)  # pragma: no cover - the grammar wraps every token

    def _v_int_(self, t: Tree) -> ir.Value:
        try:
            return ir.Const(decode_int(t.children[0]), "int")
        except ValueError:
            raise self.error(f"invalid integer {str(t.children[0])!r}", t) from None

    def _v_iso_(self, t: Tree) -> ir.Value:
        try:
            return ir.Const(parse_one(decode_string(t.children[1])), "time")
        except InvalidArgument as exc:
            raise self.error(str(exc), t) from None

    def _v_interval_(self, t: Tree) -> ir.Value:
        try:
            return ir.Const(parse_interval(decode_string(t.children[1])), "interval")
        except InvalidArgument as exc:
            raise self.error(str(exc), t) from None

    def _time_shift(self, left: ir.Value, op: str, right: ir.Value, t: Tree) -> ir.Value:
        """``time +/- interval`` (or ``interval + time``): a TIMESTAMPTZ moved along the calendar."""
        if left.ctype == "interval":
            left, right = right, left
            if op == "-":
                raise self.error("cannot subtract a timestamp from an interval", t)
        if left.ctype != "time" or right.ctype != "interval" or op not in ("+", "-"):
            raise self.error(f"'{op}' with an INTERVAL needs a TIMESTAMPTZ on the other side, +/- only", t)
        sign = -1 if op == "-" else 1
        months, micros = (sign * x for x in right.value)
        if isinstance(left, ir.Const):
            return ir.Const(int(shift(np.array([left.value]), months, micros)[0]), "time")
        return ir.TimeShift(left, months, micros)

    def _v_float_(self, t: Tree) -> ir.Value:
        return ir.Const(float(t.children[0]), "float")

    def _v_string(self, t: Tree) -> ir.Value:
        return ir.Const(decode_string(t.children[0]), "str")

    def _v_true_(self, t: Tree) -> ir.Value:
        return ir.Const(True, "bool")

    def _v_false_(self, t: Tree) -> ir.Value:
        return ir.Const(False, "bool")

    def _v_template(self, t: Tree) -> ir.Value:
        name = str(t.children[0])
        if name not in self.params:
            raise self.error(f"unknown template parameter {{{name}}}: not in filter params", t)
        try:
            value = from_param(self.params[name])
        except TypeError as exc:
            raise self.error(f"template parameter {{{name}}}: {exc}", t) from None
        return ir.Const(value, kind_of(value))

    def _v_list_(self, t: Tree) -> ir.Value:
        items = [self.value(c) for c in t.children]
        for item, child in zip(items, t.children, strict=True):
            if not isinstance(item, ir.Const):
                raise self.error(f"list elements must be constants, got {describe(item)}", child)
        return ir.Const(tuple(i.value for i in items), "list")

    def _v_unary(self, t: Tree) -> ir.Value:
        operand = self.value(t.children[1])
        if operand.ctype not in NUMERIC | {"json"}:
            raise self.error(f"unary '{t.children[0]}' needs a number, got {describe(operand)}", t)
        if str(t.children[0]) == "+":
            return operand
        if isinstance(operand, ir.Const):
            return ir.Const(-operand.value, operand.ctype)
        return ir.Neg(operand, "int" if operand.ctype == "int" else "float")

    def _v_binop(self, t: Tree) -> ir.Value:
        left, op, right = self.value(t.children[0]), str(t.children[1]), self.value(t.children[2])
        if "interval" in (left.ctype, right.ctype):
            return self._time_shift(left, op, right, t)
        for side in (left, right):
            if side.ctype not in NUMERIC | {"json"}:
                raise self.error(f"'{op}' needs numeric operands, got {describe(side)}", t)
        if isinstance(right, ir.Const) and op in ("/", "%") and right.value == 0:
            raise self.error("division by zero", t.children[2])
        if isinstance(left, ir.Const) and isinstance(right, ir.Const):
            try:
                value = fold_arith(op, left.value, right.value)
            except (OverflowError, ZeroDivisionError) as exc:
                raise self.error(f"cannot evaluate '{op}': {exc}", t) from None
            return ir.Const(value, kind_of(value))
        ctype = "int" if left.ctype == right.ctype == "int" and op != "**" else "float"
        return ir.Arith(op, left, right, ctype)

    def _v_call(self, t: Tree) -> ir.Value:
        name = str(t.children[0]).lower()
        if name in _CONTAINS:
            raise self.error(f"{name}() is a predicate, not a value", t)
        if name != "array_length":
            raise self.error(f"unknown function '{t.children[0]}'", t)
        if len(t.children) != 2:
            raise self.error(f"array_length() takes 1 argument, got {len(t.children) - 1}", t)
        target = self.value(t.children[1])
        if not isinstance(target, ir.ArrayField | ir.JsonPath):
            raise self.error(f"array_length() needs an ARRAY or JSON field, got {describe(target)}", t)
        return ir.ArrayLength(target)

    def _v_path(self, t: Tree) -> ir.Value:
        name_tok, keys_tok = t.children[0], t.children[1:]
        name = str(name_tok)
        try:
            keys = tuple(decode_string(k) if k.type == "STRING" else decode_int(k) for k in keys_tok)
        except ValueError:
            raise self.error("invalid integer index", t) from None
        fields = self.schema.fields
        if name == META or name not in fields:
            if not self.schema.dynamic:
                what = "the dynamic field is not enabled" if name == META else "field does not exist"
                raise self.error(f"unknown field '{name}' ({what})", t)
            return ir.JsonPath(META, keys if name == META else (name, *keys))
        field = fields[name]
        ftype = field.type.upper()
        if ftype in VECTOR_TYPES:
            raise self.error(f"vector field '{name}' cannot be used in a filter", t)
        if ftype == "JSON":
            return ir.JsonPath(name, keys, field.nullable)
        if ftype == "ARRAY":
            elem_type = (field.element_type or "").upper()
            if elem_type not in SCALAR_KINDS:
                raise self.error(f"ARRAY field '{name}' has unsupported element type {elem_type!r}", t)
            array = ir.ArrayField(name, SCALAR_KINDS[elem_type], elem_type, field.nullable)
            if not keys:
                return array
            if len(keys) > 1 or not isinstance(keys[0], int):
                raise self.error(f"ARRAY field '{name}' takes one integer index", t)
            return ir.ArrayElem(array, keys[0], array.elem)
        if ftype not in SCALAR_KINDS:
            raise self.error(f"field '{name}' of type {field.type} cannot be used in a filter", t)
        if keys:
            raise self.error(f"{field.type} field '{name}' cannot be indexed", t)
        return ir.Field(name, ftype, SCALAR_KINDS[ftype], field.nullable)


def _and(first: ir.Pred, second: ir.Pred) -> ir.Pred:
    items = [p for p in (first, second) if not isinstance(p, ir.BoolConst)]
    if any(isinstance(p, ir.BoolConst) and not p.value for p in (first, second)):
        return ir.BoolConst(False)
    return ir.BoolConst(True) if not items else items[0] if len(items) == 1 else ir.And(tuple(items))


def _compatible(ctype: str, v: Any) -> bool:
    kind = kind_of(v)
    if ctype in ("num", "int", "float"):
        return kind in NUMERIC
    if ctype == "json":
        return True
    if ctype == "time":  # ISO constants are microseconds since the epoch
        return kind == "int"
    return kind == ctype


def _round_float32(operand: ir.Value, const: ir.Const) -> ir.Const:
    """Milvus compares FLOAT columns in float32: round numeric constants the same way."""
    is_float32 = isinstance(operand, ir.Field) and operand.ftype == "FLOAT"
    is_float32 |= isinstance(operand, ir.ArrayElem) and operand.array.elem_type == "FLOAT"
    with np.errstate(over="ignore"):
        if is_float32 and const.ctype in NUMERIC:
            return ir.Const(float(np.float32(const.value)), "float")
        if isinstance(operand, ir.ArrayField) and operand.elem_type == "FLOAT" and const.ctype == "list":
            return ir.Const(tuple(float(np.float32(v)) for v in const.value), "list")
    return const


def describe(node: ir.Value) -> str:
    """A short human description of a value node, for error messages."""
    if isinstance(node, ir.Const):
        names = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "list": "list"}
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return f"{names[node.ctype]} {value!r}"
    if isinstance(node, ir.Field):
        return f"{node.ftype} field '{node.name}'"
    if isinstance(node, ir.JsonPath):
        if node.column == META:
            return f"dynamic field '{_render_path(node.path)}'"
        return f"JSON field '{node.column}{_render_path(node.path, True)}'"
    if isinstance(node, ir.ArrayField):
        return f"ARRAY field '{node.name}'"
    if isinstance(node, ir.ArrayElem):
        return f"element of ARRAY field '{node.array.name}'"
    if isinstance(node, ir.ArrayLength):
        return "array_length()"
    return "an arithmetic expression"


def _render_path(path: tuple[str | int, ...], brackets: bool = False) -> str:
    if not path:
        return "" if brackets else META
    head = "" if brackets else str(path[0])
    rest = path if brackets else path[1:]
    return head + "".join(f"[{k!r}]" if isinstance(k, int) else f'["{k}"]' for k in rest)
