"""The view of a collection schema that the filter compiler needs: field names, types, nullability."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.collection import CollectionSchema

# Milvus data type -> the comparison category used by the type checker.
SCALAR_KINDS: dict[str, str] = {
    "BOOL": "bool",
    "INT8": "int",
    "INT16": "int",
    "INT32": "int",
    "INT64": "int",
    "FLOAT": "float",
    "DOUBLE": "float",
    "VARCHAR": "str",
    "STRING": "str",
    "TIMESTAMPTZ": "time",  # microseconds since the epoch, UTC
}
VECTOR_TYPES = frozenset(
    {
        "FLOAT_VECTOR",
        "BINARY_VECTOR",
        "FLOAT16_VECTOR",
        "BFLOAT16_VECTOR",
        "INT8_VECTOR",
        "SPARSE_FLOAT_VECTOR",
    }
)
META = "$meta"


@dataclass(frozen=True)
class FilterField:
    """One schema field: its name, Milvus data type, array element type and nullability."""

    name: str
    type: str
    element_type: str | None = None
    nullable: bool = False
    match_analyzer: str | None = None  # VARCHAR with enable_match: its analyzer_params ("" standard)


@dataclass(frozen=True)
class FilterSchema:
    """The fields of a collection, by name, and whether its dynamic field (``$meta``) is on."""

    fields: Mapping[str, FilterField]
    dynamic: bool = False

    @classmethod
    def of(cls, fields: Iterable[FilterField], dynamic: bool = False) -> FilterSchema:
        """Build a schema from a sequence of fields."""
        return cls({f.name: f for f in fields}, dynamic)


def filter_view(schema: CollectionSchema) -> FilterSchema:
    """The view of a collection schema that the filter compiler needs."""
    return FilterSchema.of(
        (
            FilterField(
                f.name,
                f.dtype.name,
                f.element_type.name if f.element_type else None,
                f.nullable,
                f.analyzer_params if f.enable_match else None,
            )
            for f in schema.fields
        ),
        dynamic=schema.enable_dynamic_field,
    )
