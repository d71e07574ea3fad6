"""Multi-language analyzers: each row's text is analyzed by the analyzer another field names.

Shape (Milvus's ``multi_analyzer_params`` on a VARCHAR field with ``enable_analyzer``):
``{"by_field": "<VARCHAR field>", "analyzers": {name: analyzer_params, ..., "default": ...},
"alias": {other_name: name}}``. A row whose ``by_field`` value is null or names no analyzer
(after aliases) gets ``default``. At search, ``analyzer_name`` picks the query's analyzer the
same way. As in Milvus, these fields serve BM25 full-text search only: ``enable_match`` (TEXT_MATCH)
is refused on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.analyzer import TextAnalyzer, analyzer_for_field, build_analyzer
from schemas.exceptions import InvalidArgument, SchemaError
from schemas.types import DataType

if TYPE_CHECKING:
    from schemas.collection import CollectionSchema, FieldSchema


@dataclass(frozen=True)
class MultiAnalyzer:
    by_field: str
    analyzers: Mapping[str, TextAnalyzer]  # has "default"
    alias: Mapping[str, str]

    def key(self, name: str | None) -> str:
        """The analyzer a by_field value (or a search's analyzer_name) selects."""
        if name is None:
            return "default"
        name = self.alias.get(name, name)
        return name if name in self.analyzers else "default"

    def pick(self, name: str | None) -> TextAnalyzer:
        return self.analyzers[self.key(name)]

    def tokens_of(self, texts: Sequence[str | None], names: pa.Array | pa.ChunkedArray) -> list[list[str]]:
        """Each text's tokens by the analyzer its row's name selects: rows grouped by analyzer,
        each group analyzed in one call."""
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        encoded = pc.dictionary_encode(names.cast(pa.string()))
        keys = sorted(self.analyzers)
        code = {k: i for i, k in enumerate(keys)}
        per_value = np.array(
            [code[self.key(v)] for v in encoded.dictionary.to_pylist()] + [code["default"]], np.int64
        )
        rows_code = per_value[encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()]
        out: list[list[str]] = [[] for _ in texts]
        for c in np.unique(rows_code):
            rows = np.flatnonzero(rows_code == c)
            for i, tokens in zip(
                rows, self.analyzers[keys[c]].tokens_of([texts[i] for i in rows]), strict=True
            ):
                out[i] = tokens
        return out


def build_multi_analyzer(raw: str) -> MultiAnalyzer:
    """A multi-analyzer from Milvus's ``multi_analyzer_params`` JSON; SchemaError if bad."""
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise SchemaError(f"multi_analyzer_params is not valid JSON: {raw!r}") from exc
    if not isinstance(params, dict):
        raise SchemaError(f"multi_analyzer_params must be a JSON object, got {raw!r}")
    return _cached(json.dumps(params, sort_keys=True))


@lru_cache(maxsize=32)
def _cached(key: str) -> MultiAnalyzer:
    params = dict(json.loads(key))
    by_field = params.pop("by_field", None)
    analyzers = params.pop("analyzers", None)
    alias = params.pop("alias", {})
    if params:
        raise SchemaError(
            f"multi_analyzer_params: unknown keys {sorted(params)} (walvus knows by_field, analyzers, alias)"
        )
    if not isinstance(by_field, str) or not by_field:
        raise SchemaError(
            'multi_analyzer_params needs "by_field": the VARCHAR field naming each row\'s analyzer'
        )
    if not isinstance(analyzers, dict) or "default" not in analyzers:
        raise SchemaError(
            'multi_analyzer_params needs "analyzers": an object of named analyzer params with a "default" one'
        )
    if not isinstance(alias, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in alias.items()
    ):
        raise SchemaError(f"multi_analyzer_params alias must map names to analyzer names, got {alias!r}")
    unknown = sorted(v for v in alias.values() if v not in analyzers)
    if unknown:
        raise SchemaError(f"multi_analyzer_params alias names analyzers that are not defined: {unknown}")
    built = {}
    for name, spec in analyzers.items():
        try:
            built[name] = build_analyzer(spec)
        except SchemaError as exc:
            raise SchemaError(f"multi_analyzer_params analyzer {name!r}: {exc.message}") from None
    return MultiAnalyzer(by_field, built, alias)


def multi_analyzer_for_field(f: FieldSchema) -> MultiAnalyzer:
    try:
        return build_multi_analyzer(f.multi_analyzer_params)
    except SchemaError as exc:
        raise SchemaError(f"field {f.name!r}: {exc.message}", field=f.name) from None


def check_multi_analyzer(f: FieldSchema, schema_fields: Sequence[FieldSchema]) -> None:
    """What create_collection checks of a field with ``multi_analyzer_params``."""
    if not f.enable_analyzer:
        raise SchemaError(f"field {f.name!r}: multi_analyzer_params needs enable_analyzer=True", field=f.name)
    if f.analyzer_params:
        raise SchemaError(
            f"field {f.name!r}: give analyzer_params or multi_analyzer_params, not both", field=f.name
        )
    if f.enable_match:
        raise SchemaError(
            f"field {f.name!r}: multi-language analyzers serve BM25 full-text search only; "
            "enable_match (TEXT_MATCH) is not allowed with multi_analyzer_params, as in Milvus",
            field=f.name,
        )
    multi = multi_analyzer_for_field(f)
    by = next((g for g in schema_fields if g.name == multi.by_field), None)
    if by is None or by.name == f.name or by.dtype != DataType.VARCHAR:
        raise SchemaError(
            f"field {f.name!r}: multi_analyzer_params by_field {multi.by_field!r} must be another VARCHAR "
            "field of the collection",
            field=f.name,
        )


def query_analyzer(f: FieldSchema, analyzer_name: str | None) -> TextAnalyzer:
    """The analyzer for search text on field ``f`` (the BM25 input field); ``analyzer_name``
    picks one of a multi-analyzer field's analyzers (none: ``default``)."""
    if f.multi_analyzer_params:
        return multi_analyzer_for_field(f).pick(analyzer_name)
    if analyzer_name is not None:
        raise InvalidArgument(
            f"analyzer_name {analyzer_name!r}: field {f.name} has one analyzer, not multi_analyzer_params"
        )
    return analyzer_for_field(f)


def used_by_field(schema: CollectionSchema, name: str) -> str | None:
    """The multi-analyzer field whose by_field is ``name``, if any."""
    for f in schema.fields:
        if f.multi_analyzer_params and multi_analyzer_for_field(f).by_field == name:
            return f.name
    return None
