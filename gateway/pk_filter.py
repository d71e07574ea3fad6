"""Filters the gateway itself must understand: primary-key lookups such as ``id in [1, 2]``.

pymilvus turns ``delete(ids=...)``, ``get(ids=...)`` and ``query(ids=...)`` into such
expressions. When an expression is nothing but a primary-key set, the keys are used
directly: deletes need no query, and gets become key lookups in the searcher.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from gateway.schema_convert import filter_schema
from schemas.catalog import CollectionInfo
from schemas.filters import CompiledFilter, FilterSchema, compile_filter, ir

_MAX_CACHED = 512


class PkFilters:
    """Compiles filters against collection schemas, caching schemas and parameterless filters."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[int, int], FilterSchema] = {}
        self._compiled: OrderedDict[tuple[int, int, str], CompiledFilter] = OrderedDict()
        self._lock = threading.Lock()

    def schema(self, info: CollectionInfo) -> FilterSchema:
        key = (info.collection_id, info.schema.version)
        fs = self._schemas.get(key)
        if fs is None:
            fs = self._schemas[key] = filter_schema(info.schema)
        return fs

    def compile(
        self, info: CollectionInfo, expr: str, params: Mapping[str, Any] | None = None
    ) -> CompiledFilter:
        if params:
            return compile_filter(expr, self.schema(info), params)
        key = (info.collection_id, info.schema.version, expr)
        with self._lock:
            hit = self._compiled.get(key)
            if hit is not None:
                self._compiled.move_to_end(key)
                return hit
        compiled = compile_filter(expr, self.schema(info))
        with self._lock:
            self._compiled[key] = compiled
            while len(self._compiled) > _MAX_CACHED:
                self._compiled.popitem(last=False)
        return compiled

    def pk_values(
        self, info: CollectionInfo, expr: str, params: Mapping[str, Any] | None = None
    ) -> list[Any] | None:
        """The primary keys when ``expr`` only selects keys (``pk in [...]``, ``pk == v``, ``or``s of those)."""
        if not expr or not expr.strip():
            return None
        compiled = self.compile(info, expr, params)
        pk = info.schema.primary.name
        if not _only_keys(compiled.root, pk):
            return None
        values = compiled.values_for(pk)
        return None if values is None else sorted(values)


def _only_keys(node: ir.Pred, pk: str) -> bool:
    if isinstance(node, ir.InList):
        return isinstance(node.operand, ir.Field) and node.operand.name == pk
    if isinstance(node, ir.Cmp):
        return node.op == "==" and isinstance(node.left, ir.Field) and node.left.name == pk
    if isinstance(node, ir.Or):
        return all(_only_keys(i, pk) for i in node.items)
    return isinstance(node, ir.BoolConst) and not node.value
