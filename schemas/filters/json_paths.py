"""JSON columns: parse the text once per evaluation, extract paths, project to typed arrays.

The only per-row Python loops of the filter engine live here: decoding JSON text and walking a path
cannot be vectorised.  Everything downstream works on numpy/pyarrow arrays built from these lists.

Paths follow JSON-pointer rules as Milvus does: an integer key on an object reads the key ``"0"``,
and a digit-string key on an array reads that index.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # no value at this path (absent key, out-of-range index, null row)


def _fallback(text: Any) -> Any:
    try:  # orjson rejects integers beyond 64 bits; the stdlib does not
        return json.loads(text)
    except (ValueError, TypeError):
        return MISSING


def _documents(texts: list[Any]) -> Iterator[Any]:
    loads = orjson.loads
    for text in texts:
        if not text:
            yield MISSING
            continue
        try:
            yield loads(text)
        except orjson.JSONDecodeError:
            yield _fallback(text)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of fresh containers would trigger repeated full collections for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def extract_paths(column: pa.Array, paths: list[tuple[str | int, ...]]) -> list[list[Any]]:
    """Decode a string/binary column of JSON text once and return the values at each path.

    Null, empty or invalid text has no values (MISSING everywhere).  The documents live only for
    the duration of this call; what is kept is the values the filter reads.
    """
    texts = column.to_pylist()
    with _gc_paused():
        docs = list(_documents(texts))
        return [_extract(docs, path) for path in paths]


def _index(key: str | int) -> int | None:
    if isinstance(key, int):
        return key
    if key.isascii() and key.isdigit() and (key == "0" or key[0] != "0"):
        return int(key)
    return None


def _extract(items: list[Any], path: tuple[str | int, ...]) -> list[Any]:
    """One comprehension per path step (JSON-pointer semantics for objects and arrays)."""
    m = MISSING
    for key in path:
        idx = _index(key)
        skey = str(key)
        if idx is None:
            items = [d.get(skey, m) if type(d) is dict else m for d in items]
        else:
            items = [
                d.get(skey, m) if type(d) is dict else d[idx] if type(d) is list and idx < len(d) else m
                for d in items
            ]
    return items


def num_projection(items: list[Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(values, present, int_rows) for the numeric items (booleans excluded).

    int64 when every number is an integer that fits, else float64 with ``int_rows`` marking the
    integers (None when there are none).
    """
    nums = [v if type(v) is int or type(v) is float else None for v in items]
    has_float = any(type(v) is float for v in nums)
    int_rows = None
    try:
        arr = pa.array(nums, pa.float64() if has_float else pa.int64())
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):  # integers beyond int64
        arr = pa.array([None if v is None else float(v) for v in nums], pa.float64())
        has_float = True
    if has_float:
        int_rows = np.fromiter((type(v) is int for v in nums), bool, len(nums))
        int_rows = int_rows if int_rows.any() else None
    present = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    values = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)
    return (
        values.astype(np.int64 if pa.types.is_integer(arr.type) else np.float64, copy=False),
        present,
        int_rows,
    )


def str_projection(items: list[Any]) -> pa.Array:
    """The string items as an Arrow string array, null elsewhere."""
    return pa.array([v if type(v) is str else None for v in items], pa.string())


def bool_projection(items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) for the boolean items."""
    n = len(items)
    return (
        np.fromiter((v is True for v in items), bool, n),
        np.fromiter((type(v) is bool for v in items), bool, n),
    )


def null_mask(items: list[Any]) -> np.ndarray:
    """True where the item is missing or JSON null."""
    return np.fromiter((v is MISSING or v is None for v in items), bool, len(items))


def exists_mask(items: list[Any]) -> np.ndarray:
    """True where the path exists (a JSON null value exists)."""
    return np.fromiter((v is not MISSING for v in items), bool, len(items))


def lengths(items: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(length, present) of the array items."""
    lens = np.fromiter((len(v) if type(v) is list else -1 for v in items), np.int64, len(items))
    present = lens >= 0
    return np.where(present, lens, 0), present


def flatten(items: list[Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """(elements, parents, is_array): the elements of all array items and the row of each."""
    lens, present = lengths(items)
    flat = list(itertools.chain.from_iterable(v for v in items if type(v) is list))
    return flat, np.repeat(np.arange(len(items)), lens), present


def key(v: Any) -> Any:
    """A hashable normal form with JSON equality: 1 == 1.0, true != 1, lists and objects by value."""
    t = type(v)
    if t is bool:
        return (1, v)
    if t is int or t is float:
        return (2, v)
    if t is str:
        return (3, v)
    if t is list or t is tuple:
        return (4, tuple(key(x) for x in v))
    if t is dict:
        return (5, tuple(sorted((k, key(x)) for k, x in v.items())))
    return (0,)


def contains_slow(items: list[Any], values: tuple[Any, ...], mode: str) -> np.ndarray:
    """json_contains* for values that are themselves arrays or objects (compared by value)."""
    wanted = {key(v) for v in values}
    out = np.zeros(len(items), bool)
    for i, v in enumerate(items):
        if type(v) is list:
            have = {key(x) for x in v}
            out[i] = wanted <= have if mode == "all" else not wanted.isdisjoint(have)
    return out


def equals(items: list[Any], value: Any) -> np.ndarray:
    """True where the item equals ``value`` under JSON equality."""
    k = key(value)
    return np.fromiter((v is not MISSING and key(v) == k for v in items), bool, len(items))


def containers_equal(left: list[Any], right: list[Any]) -> np.ndarray:
    """Row-wise JSON equality of two item lists, for the arrays and objects among them."""
    containers = (list, dict)
    return np.fromiter(
        (
            type(a) in containers and type(b) in containers and key(a) == key(b)
            for a, b in zip(left, right, strict=True)
        ),
        bool,
        len(left),
    )
