"""Typed intermediate representation a filter compiles to.

Value nodes carry ``ctype``, the static category used by the type checker: ``int``, ``float``, ``str``,
``bool``, ``list`` (constant lists), ``json`` (anything: JSON paths and dynamic fields) or ``array``.
Predicate nodes evaluate to a three-valued mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NUMERIC = frozenset({"int", "float"})


class Value:
    """Base of the nodes that produce values."""

    ctype: str


class Pred:
    """Base of the nodes that produce (three-valued) booleans."""


@dataclass(frozen=True)
class Const(Value):
    value: Any  # int, float, str, bool, or a tuple of those (lists)
    ctype: str


@dataclass(frozen=True)
class Field(Value):
    """A scalar schema column."""

    name: str
    ftype: str
    ctype: str
    nullable: bool


@dataclass(frozen=True)
class JsonPath(Value):
    """A path into a JSON column (or into ``$meta`` for dynamic fields); ``()`` is the whole value."""

    column: str
    path: tuple[str | int, ...]
    nullable: bool = False
    ctype: str = "json"


@dataclass(frozen=True)
class ArrayField(Value):
    name: str
    elem: str  # ctype of the elements
    elem_type: str  # Milvus element type
    nullable: bool
    ctype: str = "array"


@dataclass(frozen=True)
class ArrayElem(Value):
    array: ArrayField
    index: int
    ctype: str


@dataclass(frozen=True)
class ArrayLength(Value):
    operand: ArrayField | JsonPath
    ctype: str = "int"


@dataclass(frozen=True)
class Arith(Value):
    op: str  # + - * / % **
    left: Value
    right: Value
    ctype: str


@dataclass(frozen=True)
class Neg(Value):
    operand: Value
    ctype: str


@dataclass(frozen=True)
class TimeShift(Value):
    """A TIMESTAMPTZ value moved by an interval: calendar ``months``, then fixed ``micros``."""

    operand: Value
    months: int
    micros: int
    ctype: str = "time"


@dataclass(frozen=True)
class BoolConst(Pred):
    value: bool


@dataclass(frozen=True)
class Cmp(Pred):
    """``left op right``; a constant operand is always on the right."""

    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class InList(Pred):
    operand: Value
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Like(Pred):
    operand: Value
    pattern: str


@dataclass(frozen=True)
class IsNull(Pred):
    operand: Value


@dataclass(frozen=True)
class Exists(Pred):
    operand: JsonPath


@dataclass(frozen=True)
class Contains(Pred):
    mode: str  # one, all, any
    operand: ArrayField | JsonPath
    values: tuple[Any, ...]


@dataclass(frozen=True)
class TextMatch(Pred):
    """TEXT_MATCH (any token) or PHRASE_MATCH (tokens in order within ``slop``) on a VARCHAR field."""

    operand: Field
    analyzer: str
    terms: tuple[int, ...]
    phrase: bool = False
    slop: int = 0


@dataclass(frozen=True)
class Truth(Pred):
    """A boolean-valued field or JSON path used as a predicate."""

    operand: Value


@dataclass(frozen=True)
class And(Pred):
    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Or(Pred):
    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Not(Pred):
    item: Pred


def children(node: Any) -> tuple[Any, ...]:
    """The direct sub-nodes of an IR node (for walks such as field collection)."""
    if isinstance(node, And | Or):
        return node.items
    if isinstance(node, Not):
        return (node.item,)
    if isinstance(node, Cmp | Arith):
        return (node.left, node.right)
    if isinstance(node, ArrayElem):
        return (node.array,)
    if isinstance(
        node, InList | Like | IsNull | Exists | Contains | TextMatch | Truth | ArrayLength | Neg | TimeShift
    ):
        return (node.operand,)
    return ()
