"""Schema functions: fields the server fills from other fields. walvus has BM25.

A BM25 function reads one VARCHAR field with ``enable_analyzer=True`` and writes the term
frequencies of its tokens into one SPARSE_FLOAT_VECTOR field (``schemas/bm25.py``). Clients
never write that output field; searches send raw text for it and are scored with BM25.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from schemas.exceptions import SchemaError
from schemas.types import DataType

if TYPE_CHECKING:
    from schemas.collection import FieldSchema

BM25 = "BM25"
SUPPORTED = (BM25,)


@dataclass(frozen=True)
class FunctionSchema:
    name: str
    type: str  # Milvus's FunctionType name: "BM25"
    input_field_names: tuple[str, ...]
    output_field_names: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "input_field_names": list(self.input_field_names),
            "output_field_names": list(self.output_field_names),
            "params": dict(self.params),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FunctionSchema:
        return cls(
            name=d["name"],
            type=d["type"],
            input_field_names=tuple(d["input_field_names"]),
            output_field_names=tuple(d["output_field_names"]),
            params=dict(d.get("params") or {}),
            description=d.get("description", ""),
        )


def validate_functions(fields: list[FieldSchema], functions: tuple[FunctionSchema, ...]) -> list[FieldSchema]:
    """Milvus's checks on a schema's functions; returns the fields with outputs marked."""
    by_name = {f.name: f for f in fields}
    names: set[str] = set()
    outputs: dict[str, str] = {}
    for fn in functions:
        if not fn.name:
            raise SchemaError("a function needs a name")
        if fn.name in names:
            raise SchemaError(f"duplicate function name {fn.name!r}")
        names.add(fn.name)
        if fn.type not in SUPPORTED:
            raise SchemaError(
                f"function {fn.name!r}: function type {fn.type} is not supported by walvus "
                f"(supported: {', '.join(SUPPORTED)})"
            )
        if fn.params:
            raise SchemaError(
                f"function {fn.name!r}: BM25 takes no params, got {sorted(fn.params)}; set bm25_k1 and "
                "bm25_b on the index"
            )
        if len(fn.input_field_names) != 1 or len(fn.output_field_names) != 1:
            raise SchemaError(
                f"function {fn.name!r}: BM25 function needs exactly one input field and one output field"
            )
        src = by_name.get(fn.input_field_names[0])
        out = by_name.get(fn.output_field_names[0])
        if src is None or out is None:
            missing = fn.input_field_names[0] if src is None else fn.output_field_names[0]
            raise SchemaError(f"function {fn.name!r}: field {missing!r} is not in the schema")
        if src.dtype != DataType.VARCHAR or not src.enable_analyzer:
            raise SchemaError(
                f"function {fn.name!r}: BM25 function input field {src.name!r} must be VARCHAR with "
                "enable_analyzer=True"
            )
        if not out.dtype.is_sparse:
            raise SchemaError(
                f"function {fn.name!r}: BM25 function output field {out.name!r} must be SPARSE_FLOAT_VECTOR, "
                f"not {out.dtype.name}"
            )
        if out.name in outputs:
            raise SchemaError(f"field {out.name!r} is the output of two functions")
        outputs[out.name] = fn.name
    result = []
    for f in fields:
        if f.is_function_output and f.name not in outputs:
            raise SchemaError(f"field {f.name!r} is marked as a function output, but no function writes it")
        result.append(replace(f, is_function_output=True) if f.name in outputs else f)
    return result


def function_of(functions: tuple[FunctionSchema, ...], output: str) -> FunctionSchema | None:
    return next((fn for fn in functions if output in fn.output_field_names), None)
