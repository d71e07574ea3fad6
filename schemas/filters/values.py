"""Runtime column values and the vectorised operations on them.

Every vector carries two masks: ``present`` (there is a value of this kind on the row) and
``rowvalid`` (the row itself is not null).  A comparison is False where a value is absent (a missing
JSON key, a type mismatch, an out-of-range array index) but *null* where a row is null, so that
``not`` keeps null rows out.  ``None`` for a mask means all True.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import json_paths

Mask = np.ndarray | None
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_NP_CMP = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal}
_NP_CMP |= {">": np.greater, ">=": np.greater_equal}
_PC_CMP = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal}
_PC_CMP |= {">": pc.greater, ">=": pc.greater_equal}


def mask_and(a: Mask, b: Mask) -> Mask:
    if a is None:
        return b
    return a if b is None else a & b


class NumV:
    """Numbers: int64 or float64 values.

    JSON values mix integers and floats row by row; they are held as float64 with ``int_rows``
    marking the integers, so that ``/`` and ``%`` stay integer operations on those rows.
    """

    __slots__ = ("values", "present", "rowvalid", "int_rows")

    def __init__(self, values: np.ndarray, present: Mask, rowvalid: Mask, int_rows: Mask = None) -> None:
        self.values, self.present, self.rowvalid, self.int_rows = values, present, rowvalid, int_rows


class BoolV:
    __slots__ = ("values", "present", "rowvalid")

    def __init__(self, values: np.ndarray, present: Mask, rowvalid: Mask) -> None:
        self.values, self.present, self.rowvalid = values, present, rowvalid


class StrV:
    """Strings as an Arrow array; nulls in ``arr`` are the absent values."""

    __slots__ = ("arr", "rowvalid")

    def __init__(self, arr: pa.Array, rowvalid: Mask) -> None:
        self.arr, self.rowvalid = arr, rowvalid


class ArrV:
    """An ARRAY column (Arrow list array) with the ctype of its elements."""

    __slots__ = ("arr", "elem", "rowvalid")

    def __init__(self, arr: pa.Array, elem: str, rowvalid: Mask) -> None:
        self.arr, self.elem, self.rowvalid = arr, elem, rowvalid


class JsonV:
    """Values extracted from JSON documents, of any JSON type, with cached typed projections."""

    __slots__ = ("items", "rowvalid", "_num", "_str", "_bool")

    def __init__(self, items: list[Any], rowvalid: Mask) -> None:
        self.items, self.rowvalid = items, rowvalid
        self._num: NumV | None = None
        self._str: StrV | None = None
        self._bool: BoolV | None = None

    def num(self) -> NumV:
        if self._num is None:
            values, present, int_rows = json_paths.num_projection(self.items)
            self._num = NumV(values, present, self.rowvalid, int_rows)
        return self._num

    def str_(self) -> StrV:
        if self._str is None:
            self._str = StrV(json_paths.str_projection(self.items), self.rowvalid)
        return self._str

    def bool_(self) -> BoolV:
        if self._bool is None:
            self._bool = BoolV(*json_paths.bool_projection(self.items), self.rowvalid)
        return self._bool


def rowvalid(v: Any) -> Mask:
    return getattr(v, "rowvalid", None)


def project(v: Any, kind: str) -> Any:
    """``v`` seen as ``kind`` (num/str/bool), or None when it can hold no such value."""
    if isinstance(v, JsonV):
        return v.num() if kind == "num" else v.str_() if kind == "str" else v.bool_()
    if kind == "num":
        ok = isinstance(v, NumV) or type(v) in (int, float)
    elif kind == "str":
        ok = isinstance(v, StrV) or type(v) is str
    else:
        ok = isinstance(v, BoolV) or type(v) is bool
    return v if ok else None


def _num_parts(v: Any) -> tuple[Any, Mask]:
    if isinstance(v, NumV):
        return v.values, v.present
    if type(v) is int and not _I64_MIN <= v <= _I64_MAX:
        return float(v), None
    return v, None


def compare_kind(kind: str, op: str, left: Any, right: Any) -> np.ndarray:
    """``left op right`` for two values of one kind; False where either is absent."""
    if kind == "str":
        la = left.arr if isinstance(left, StrV) else pa.scalar(left, pa.string())
        ra = right.arr if isinstance(right, StrV) else pa.scalar(right, pa.string())
        return _to_np(_PC_CMP[op](la, ra))
    if kind == "bool":
        lv, lp = (left.values, left.present) if isinstance(left, BoolV) else (left, None)
        rv, rp = (right.values, right.present) if isinstance(right, BoolV) else (right, None)
    else:
        (lv, lp), (rv, rp) = _num_parts(left), _num_parts(right)
    with np.errstate(invalid="ignore"):
        res = np.asarray(_NP_CMP[op](lv, rv), dtype=bool)
    present = mask_and(lp, rp)
    return res if present is None else res & present


def _to_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def in_list(v: Any, values: tuple[Any, ...], n: int) -> np.ndarray:
    """``v in values``: False where absent.  Each kind of value only matches constants of its kind."""
    out = np.zeros(n, bool)
    nums = [x for x in values if type(x) in (int, float)]
    strs = [x for x in values if type(x) is str]
    bools = [x for x in values if type(x) is bool]
    if nums and (num := project(v, "num")) is not None:
        ints = [x for x in nums if type(x) is int and _I64_MIN <= x <= _I64_MAX]
        floats = [float(x) for x in nums if type(x) is float or not _I64_MIN <= x <= _I64_MAX]
        hit = np.isin(num.values, np.array(ints, np.int64)) if ints else np.zeros(n, bool)
        if floats:
            hit |= np.isin(num.values, np.array(floats, np.float64))
        out |= hit if num.present is None else hit & num.present
    if strs and (s := project(v, "str")) is not None:
        out |= _to_np(pc.is_in(s.arr, value_set=pa.array(strs, s.arr.type)))
    if bools and (b := project(v, "bool")) is not None:
        hit = np.isin(b.values, np.array(bools, bool))
        out |= hit if b.present is None else hit & b.present
    return out


def like(v: StrV, pattern: str) -> np.ndarray:
    """SQL-like match: ``%`` any run, ``_`` one character, ``\\%``/``\\_``/``\\\\`` literals."""
    parts: list[str | None] = []  # literal runs, with None for each %
    literal: list[str] = []
    regex: list[str] = []
    needs_regex = False
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "\\")
            c = nxt if nxt in "%_\\" else "\\" + nxt
            literal.append(c)
            regex.extend(_re_escape(ch) for ch in c)
        elif c == "%":
            parts.extend(["".join(literal), None])
            literal = []
            regex.append(".*")
        elif c == "_":
            needs_regex = True
            regex.append(".")
        else:
            literal.append(c)
            regex.append(_re_escape(c))
    parts.append("".join(literal))
    fixed = [p for p in parts if p]
    arr = v.arr
    if needs_regex or len(fixed) > 1:
        res = pc.match_substring_regex(arr, "(?s)^" + "".join(regex) + r"\z")
    elif not fixed:
        res = pc.is_valid(arr) if len(parts) > 1 else pc.equal(arr, "")
    else:
        text, starts, ends = fixed[0], parts[0] != "", parts[-1] != ""
        if starts and ends:
            res = pc.equal(arr, text)
        elif starts:
            res = pc.starts_with(arr, text)
        elif ends:
            res = pc.ends_with(arr, text)
        else:
            res = pc.match_substring(arr, text)
    return _to_np(res)


def _re_escape(c: str) -> str:
    return c if c.isalnum() else f"\\x{{{ord(c):x}}}"


def _int_rows(values: np.ndarray, v: Any) -> bool | np.ndarray:
    """True/False when every/no value is an integer, else the per-row mask."""
    if isinstance(v, NumV) and v.int_rows is not None:
        return v.int_rows
    return values.dtype.kind == "i"


def arith(op: str, left: Any, right: Any) -> NumV:
    """Vectorised arithmetic; a zero divisor makes the value absent."""
    (lv, lp), (rv, rp) = _num_parts(left), _num_parts(right)
    lv, rv = np.asarray(lv), np.asarray(rv)
    present = mask_and(lp, rp)
    ints = np.logical_and(_int_rows(lv, left), _int_rows(rv, right))
    int_rows = ints if ints.ndim else None
    with np.errstate(all="ignore"):
        if op in ("+", "-", "*"):
            res = {"+": np.add, "-": np.subtract, "*": np.multiply}[op](lv, rv)
        elif op == "**":
            res, int_rows = np.power(lv.astype(np.float64), rv.astype(np.float64)), None
        else:
            zero = rv == 0
            if zero.any():
                present = mask_and(present, np.broadcast_to(~zero, np.broadcast(lv, rv).shape))
                rv = np.where(zero, 1, rv)
            if ints.ndim:  # mixed JSON numbers: integer semantics on the integer rows
                res = np.where(
                    ints, _divide(op, lv.astype(np.int64), rv.astype(np.int64)), _divide(op, lv, rv)
                )
            else:
                res = _divide(op, lv, rv)
    return NumV(np.asarray(res), present, mask_and(rowvalid(left), rowvalid(right)), int_rows)


def _divide(op: str, lv: np.ndarray, rv: np.ndarray) -> np.ndarray:
    """C semantics: integer quotients truncate toward zero, remainders take the dividend's sign."""
    rem = np.fmod(lv, rv)
    if op == "%":
        return rem
    return (lv - rem) // rv if lv.dtype.kind == "i" and rv.dtype.kind == "i" else lv / rv


def negate(v: NumV) -> NumV:
    with np.errstate(all="ignore"):
        return NumV(-v.values, v.present, v.rowvalid, v.int_rows)


def _rows_with(hit: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, bool)
    out[parents[hit]] = True
    return out


def _hits(elems: Any, m: int, parents: np.ndarray, values: tuple[Any, ...], mode: str, n: int) -> np.ndarray:
    if mode != "all":
        return _rows_with(in_list(elems, values, m), parents, n)
    out = np.ones(n, bool)
    for x in values:
        out &= _rows_with(in_list(elems, (x,), m), parents, n)
    return out


def array_hits(v: ArrV, values: tuple[Any, ...], mode: str, n: int) -> np.ndarray:
    """array_contains / _all / _any on an ARRAY column, vectorised over the flattened elements."""
    flat = pc.list_flatten(v.arr)
    parents = pc.list_parent_indices(v.arr).to_numpy()
    return _hits(elements(flat, v.elem), len(flat), parents, values, mode, n)


def json_hits(v: JsonV, values: tuple[Any, ...], mode: str, n: int) -> np.ndarray:
    """json_contains / _all / _any: the JSON value is an array holding one / all / any of ``values``."""
    if any(type(x) is tuple for x in values):
        return json_paths.contains_slow(v.items, values, mode)
    flat, parents, is_array = json_paths.flatten(v.items)
    return _hits(JsonV(flat, None), len(flat), parents, values, mode, n) & is_array


def elements(arr: pa.Array, ctype: str) -> Any:
    """A typed Arrow array of scalars as the matching runtime vector (nulls are absent values)."""
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    if ctype == "str":
        return StrV(arr, None)
    if ctype == "bool":
        return BoolV(_to_np(arr), valid, None)
    dtype = np.int64 if ctype == "int" else np.float64
    values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return NumV(values, valid, None)


def array_equals(v: ArrV, values: tuple[Any, ...]) -> np.ndarray:
    """The array equals ``values`` element by element."""
    lens = pc.fill_null(pc.list_value_length(v.arr), -1).to_numpy(zero_copy_only=False)
    out = lens == len(values)
    for i, x in enumerate(values):
        elem = array_element(v, i)
        kind = "num" if v.elem in ("int", "float") else v.elem
        out &= compare_kind(kind, "==", elem, x)
    return out


def array_element(v: ArrV, index: int) -> Any:
    """Element ``index`` of every array (absent where the array is shorter)."""
    arr = v.arr
    lens = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    starts = arr.offsets.to_numpy()[:-1]
    inside = lens > index
    idx = pa.array(np.where(inside, starts + index, 0), mask=~inside)
    elem = elements(arr.values.take(idx), v.elem)
    elem.rowvalid = v.rowvalid
    return elem


def array_lengths(v: ArrV | JsonV) -> NumV:
    if isinstance(v, JsonV):
        return NumV(*json_paths.lengths(v.items), v.rowvalid)
    lens = pc.fill_null(pc.list_value_length(v.arr), 0).to_numpy(zero_copy_only=False)
    return NumV(lens.astype(np.int64), v.rowvalid, v.rowvalid)
