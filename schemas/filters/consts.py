"""Constants: template-parameter conversion, type tags and compile-time folding.

Integer ``/`` and ``%`` follow Milvus (C++/Go) semantics: division truncates toward zero and the
remainder takes the sign of the dividend; ``**`` always yields a float.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
CMP_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def kind_of(v: Any) -> str:
    """The ctype of a Python constant."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, tuple):
        return "list"
    raise TypeError(f"unsupported constant {v!r}")


def from_param(v: Any) -> Any:
    """A template parameter value as a filter constant (lists become tuples); TypeError if unsupported."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return tuple(from_param(x) for x in v)
    if isinstance(v, Mapping):
        raise TypeError("objects are not supported, use a scalar or a list")
    raise TypeError(f"unsupported value of type {type(v).__name__}")


def trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def fold_arith(op: str, a: int | float, b: int | float) -> int | float:
    """Evaluate ``a op b`` for constants with the same semantics as the vectorised evaluator."""
    ints = isinstance(a, int) and isinstance(b, int)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return trunc_div(a, b) if ints else a / b
    if op == "%":
        return a - b * trunc_div(a, b) if ints else math.fmod(a, b)
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def fold_cmp(op: str, a: Any, b: Any) -> bool:
    """Compare two constants; values of different kinds are never equal."""
    if (kind_of(a) in ("int", "float")) != (kind_of(b) in ("int", "float")) or (
        kind_of(a) not in ("int", "float") and kind_of(a) != kind_of(b)
    ):
        return op == "!="
    try:
        return bool(CMP_OPS[op](a, b))
    except TypeError:
        return op == "!="
