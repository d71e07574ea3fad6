"""The collection schema model: fields, primary key, vectors, dynamic field."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa

from schemas.analyzer import analyzer_for_field
from schemas.exceptions import FieldNameInvalid, SchemaError
from schemas.functions import FunctionSchema, validate_functions
from schemas.multi_analyzer import check_multi_analyzer, used_by_field
from schemas.types import SCALAR_ARROW, DataType, delta_vector_type, vector_arrow_type

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
DEFAULT_MAX_DIM = 32_768
META_FIELD = "$meta"
PARTITION_COLUMN = "_partition"
# System columns carried by every stored row (see FORMAT.md).
SYSTEM_COLUMNS: dict[str, pa.DataType] = {
    PARTITION_COLUMN: pa.string(),
    "_shard": pa.int32(),
    "_offset": pa.int64(),
    "_seq": pa.int64(),
    "_ts": pa.int64(),
    "_segment": pa.int64(),
}


@dataclass(frozen=True)
class FieldSchema:
    name: str
    dtype: DataType
    is_primary: bool = False
    auto_id: bool = False
    dim: int | None = None
    max_length: int | None = None
    element_type: DataType | None = None
    max_capacity: int | None = None
    nullable: bool = False
    default_value: Any = None
    is_partition_key: bool = False
    description: str = ""
    field_id: int = 0
    # full text: the VARCHAR is tokenised (analyzer_params: Milvus's JSON shape, "" = standard)
    enable_analyzer: bool = False
    analyzer_params: str = ""
    # one analyzer per row, named by another field (schemas/multi_analyzer.py; "" = none)
    multi_analyzer_params: str = ""
    enable_match: bool = False
    is_function_output: bool = False  # filled by a schema function (BM25), never by a client

    def arrow_type(self) -> pa.DataType:
        if self.dtype.is_vector:
            return vector_arrow_type(self.dtype, int(self.dim or 0))
        if self.dtype == DataType.ARRAY:
            assert self.element_type is not None
            return pa.list_(SCALAR_ARROW[self.element_type])
        return SCALAR_ARROW[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dtype"] = self.dtype.name
        d["element_type"] = self.element_type.name if self.element_type else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldSchema:
        d = dict(d)
        d["dtype"] = DataType[d["dtype"]]
        d["element_type"] = DataType[d["element_type"]] if d.get("element_type") else None
        return cls(**d)


@dataclass(frozen=True)
class CollectionSchema:
    fields: tuple[FieldSchema, ...]
    description: str = ""
    enable_dynamic_field: bool = False
    version: int = 1
    functions: tuple[FunctionSchema, ...] = ()
    # (name, field id) of dropped fields: their stored columns stay in old files, so neither the
    # name nor the id is used again
    dropped_fields: tuple[tuple[str, int], ...] = ()
    _by_name: dict[str, FieldSchema] = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_timestamptz(self) -> bool:
        return any(f.dtype == DataType.TIMESTAMPTZ for f in self.fields)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})

    @property
    def primary(self) -> FieldSchema:
        return next(f for f in self.fields if f.is_primary)

    @property
    def vector_fields(self) -> list[FieldSchema]:
        return [f for f in self.fields if f.dtype.is_vector]

    @property
    def partition_key(self) -> FieldSchema | None:
        return next((f for f in self.fields if f.is_partition_key), None)

    def field(self, name: str) -> FieldSchema | None:
        return self._by_name.get(name)

    def data_arrow_schema(self) -> pa.Schema:
        """Arrow schema of user data: the fields, plus ``$meta`` when dynamic fields are on."""
        cols = [pa.field(f.name, f.arrow_type(), nullable=True) for f in self.fields]
        if self.enable_dynamic_field:
            cols.append(pa.field(META_FIELD, pa.string()))
        return pa.schema(cols)

    def stored_arrow_schema(self) -> pa.Schema:
        """What a segment row looks like in Delta: user data plus the system columns."""
        sch = self.data_arrow_schema()
        for name, typ in SYSTEM_COLUMNS.items():
            sch = sch.append(pa.field(name, typ))
        return sch

    def delta_arrow_schema(self) -> pa.Schema:
        """What a segment row looks like in the Parquet files of Delta: vectors variable-size."""
        sch = self.stored_arrow_schema()
        for f in self.vector_fields:
            i = sch.get_field_index(f.name)
            sch = sch.set(i, pa.field(f.name, delta_vector_type(f.dtype), nullable=True))
        return sch

    def to_delta(self, table: pa.Table) -> pa.Table:
        """``table`` with its vector columns cast to the Delta file types (values unchanged)."""
        for f in self.vector_fields:
            i = table.schema.get_field_index(f.name)
            if i >= 0:
                table = table.set_column(i, f.name, table.column(i).cast(delta_vector_type(f.dtype)))
        return table

    def with_field(self, new: FieldSchema) -> CollectionSchema:
        """A new schema version with one more (nullable) field: Milvus's add-field."""
        check_name("field", new.name)
        if new.name in self._by_name:
            raise SchemaError(f"field {new.name!r} already exists", field=new.name)
        if new.is_primary or new.is_partition_key:
            raise SchemaError(f"added field {new.name!r} cannot be the primary key or the partition key")
        _validate_field(new, DEFAULT_MAX_DIM)  # the checks a created schema gets
        if new.multi_analyzer_params:
            check_multi_analyzer(new, (*self.fields, new))
        if not (new.nullable or new.default_value is not None):
            raise SchemaError(f"added field {new.name!r} must be nullable or have a default value")
        if new.dtype.is_vector and not new.nullable:
            raise SchemaError(
                f"added vector field {new.name!r} must be nullable: its existing rows have none",
                field=new.name,
            )
        check_field_name(new.name)
        if new.name in {n for n, _ in self.dropped_fields}:
            raise SchemaError(
                f"field name {new.name!r} belonged to a dropped field: its old values are still stored, "
                "so the name cannot be used again; choose another name",
                field=new.name,
            )
        fid = max([f.field_id for f in self.fields] + [i for _, i in self.dropped_fields]) + 1
        return replace(self, fields=(*self.fields, replace(new, field_id=fid)), version=self.version + 1)

    def with_field_params(self, name: str, **changes: Any) -> CollectionSchema:
        """A new schema version with ``changes`` (max_length, max_capacity) on field ``name``:
        Milvus's alter-collection-field. Rows already stored keep their values."""
        old = self.field(name)
        if old is None:
            raise SchemaError(f"field {name!r} does not exist", field=name)
        new = replace(old, **changes)
        _validate_field(new, DEFAULT_MAX_DIM)
        fields = tuple(new if f.name == name else f for f in self.fields)
        return replace(self, fields=fields, version=self.version + 1)

    def without_field(self, name: str) -> CollectionSchema:
        """A new schema version without the field: Milvus's drop-field. The stored values stay in
        the files written before (readers ignore them) until compaction rewrites those files."""
        f = self.field(name)
        if f is None:
            raise SchemaError(f"field {name!r} does not exist", field=name)
        if f.is_primary or f.is_partition_key:
            raise SchemaError(f"field {name!r} is the primary key or the partition key: it cannot be dropped")
        used = {n for fn in self.functions for n in (*fn.input_field_names, *fn.output_field_names)}
        if name in used:
            raise SchemaError(f"field {name!r} is an input or output of a function: it cannot be dropped")
        user = used_by_field(self, name)
        if user is not None:
            raise SchemaError(
                f"field {name!r} names the analyzer of each row of field {user!r} (multi_analyzer_params "
                "by_field): it cannot be dropped"
            )
        if f.dtype.is_vector and len(self.vector_fields) == 1:
            raise SchemaError(f"field {name!r} is the collection's only vector field: it cannot be dropped")
        return replace(
            self,
            fields=tuple(g for g in self.fields if g.name != name),
            dropped_fields=(*self.dropped_fields, (name, f.field_id)),
            version=self.version + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": [f.to_dict() for f in self.fields],
            "description": self.description,
            "enable_dynamic_field": self.enable_dynamic_field,
            "version": self.version,
            "functions": [fn.to_dict() for fn in self.functions],
            "dropped_fields": [list(d) for d in self.dropped_fields],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionSchema:
        return cls(
            fields=tuple(FieldSchema.from_dict(f) for f in d["fields"]),
            description=d.get("description", ""),
            enable_dynamic_field=bool(d.get("enable_dynamic_field", False)),
            version=int(d.get("version", 1)),
            functions=tuple(FunctionSchema.from_dict(fn) for fn in d.get("functions", ())),
            dropped_fields=tuple((str(n), int(i)) for n, i in d.get("dropped_fields", ())),
        )


# Words of the filter grammar (any case), and Milvus's reserved function names: a field named so
# could not be named in a filter expression, so Milvus refuses it and so does walvus.
FILTER_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "is", "null", "exists", "true", "false"})
RESERVED_FUNCTIONS = frozenset(
    {
        "json_contains",
        "json_contains_all",
        "json_contains_any",
        "array_contains",
        "array_contains_all",
        "array_contains_any",
        "array_length",
        "text_match",
        "phrase_match",
        "random_sample",
    }
)


def name_problem(kind: str, name: Any) -> str | None:
    """Why Milvus refuses ``name`` as a ``kind`` name (its wording), or None when it is valid."""
    if not isinstance(name, str) or not name.strip():
        return f"{kind} name should not be empty"
    if len(name) > 255:
        return f"the length of a {kind} name must be less than 255 characters"
    if not (name[0] == "_" or (name[0].isascii() and name[0].isalpha())):
        return f"the first character of a {kind} name must be an underscore or letter"
    if not NAME_RE.match(name):
        return f"{kind} name can only contain numbers, letters and underscores"
    return None


def check_name(kind: str, name: str) -> None:
    problem = name_problem(kind, name)
    if problem is not None:
        error = FieldNameInvalid if kind == "field" else SchemaError
        raise error(f"Invalid {kind} name: {name}. {problem}: invalid parameter", **{kind: name})


def check_field_name(name: str) -> None:
    check_name("field", name)
    if name.lower() in FILTER_KEYWORDS or name.lower() in RESERVED_FUNCTIONS:
        raise FieldNameInvalid(
            f"Invalid field name: {name}. {name} is keyword in milvus: a filter expression could not "
            "name this field, choose another name",
            field=name,
        )
    if name in SYSTEM_COLUMNS:
        raise FieldNameInvalid(
            f"Invalid field name: {name}. {name} is reserved: walvus stores a system column of that "
            "name with every row",
            field=name,
        )


def validate_schema(schema: CollectionSchema, *, max_dim: int = DEFAULT_MAX_DIM) -> CollectionSchema:
    """Check a schema the way Milvus does and number its fields. Returns the normalised schema."""
    if not schema.fields:
        raise SchemaError("schema has no fields")
    seen: set[str] = set()
    fields: list[FieldSchema] = []
    for i, f in enumerate(schema.fields):
        check_field_name(f.name)
        if f.name in seen:
            raise SchemaError(f"duplicated field name {f.name!r}", field=f.name)
        seen.add(f.name)
        _validate_field(f, max_dim)
        fields.append(replace(f, field_id=100 + i))
    primaries = [f for f in fields if f.is_primary]
    if len(primaries) != 1:
        names = ", ".join(repr(f.name) for f in primaries)
        raise SchemaError(
            f"a schema needs exactly one primary key field, got {len(primaries)} {names}".rstrip()
        )
    pk = primaries[0]
    if pk.dtype not in (DataType.INT64, DataType.VARCHAR):
        raise SchemaError(f"primary key {pk.name!r} must be INT64 or VARCHAR, got {pk.dtype.name}")
    if pk.nullable:
        raise SchemaError(f"primary field not support null: primary key {pk.name!r} cannot be nullable")
    if not any(f.dtype.is_vector for f in fields):
        raise SchemaError("schema does not contain vector field: invalid parameter")
    if sum(f.is_partition_key for f in fields) > 1:
        raise SchemaError("a collection can have only one partition key field")
    for f in fields:
        if f.multi_analyzer_params:
            check_multi_analyzer(f, fields)
    fields = validate_functions(fields, schema.functions)
    return replace(schema, fields=tuple(fields))


def _validate_field(f: FieldSchema, max_dim: int) -> None:
    if f.dtype in (DataType.NONE, DataType.STRING):
        raise SchemaError(f"field {f.name!r}: data type {f.dtype.name} is not supported", field=f.name)
    if f.dtype.is_sparse:
        if f.is_primary or f.is_partition_key:
            raise SchemaError(
                f"sparse vector field {f.name!r} cannot be the primary key or the partition key",
                field=f.name,
            )
    elif f.dtype.is_vector:
        if f.dim is None or not 1 <= int(f.dim) <= max_dim:
            raise SchemaError(
                f"field {f.name!r}: dim must be between 1 and {max_dim}, got {f.dim}", field=f.name
            )
        if f.dtype == DataType.BINARY_VECTOR and int(f.dim) % 8:
            raise SchemaError(f"field {f.name!r}: binary vector dim must be a multiple of 8", field=f.name)
    if (f.enable_analyzer or f.enable_match) and f.dtype != DataType.VARCHAR:
        raise SchemaError(
            f"field {f.name!r}: enable_analyzer and enable_match are for VARCHAR fields, not {f.dtype.name}",
            field=f.name,
        )
    if f.enable_analyzer or f.enable_match:
        analyzer_for_field(f)  # a bad analyzer_params is refused when the field is created
    if f.dtype == DataType.VARCHAR and not (f.max_length and 1 <= f.max_length <= 65_535):
        raise SchemaError(
            f"field {f.name!r}: VARCHAR needs max_length between 1 and 65535, got {f.max_length}",
            field=f.name,
        )
    if f.dtype == DataType.ARRAY:
        if f.element_type is None or f.element_type not in SCALAR_ARROW or f.element_type == DataType.JSON:
            raise SchemaError(f"field {f.name!r}: ARRAY needs a scalar element_type", field=f.name)
        if not (f.max_capacity and 1 <= f.max_capacity <= 4096):
            raise SchemaError(f"field {f.name!r}: ARRAY needs max_capacity between 1 and 4096", field=f.name)
        if f.element_type == DataType.VARCHAR and not f.max_length:
            raise SchemaError(f"field {f.name!r}: ARRAY of VARCHAR needs max_length", field=f.name)
    if f.auto_id and not f.is_primary:
        raise SchemaError(f"field {f.name!r}: auto_id is only for the primary key", field=f.name)
    if f.is_partition_key and f.dtype not in (DataType.INT64, DataType.VARCHAR):
        raise SchemaError(f"partition key {f.name!r} must be INT64 or VARCHAR", field=f.name)
    if f.is_partition_key and f.is_primary:
        raise SchemaError("the primary key cannot be the partition key", field=f.name)
    if f.is_partition_key and f.nullable:
        raise SchemaError(f"partition key field not support nullable (field {f.name!r})", field=f.name)
    if f.default_value is not None:
        _validate_default(f)


_INT_RANGE = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_DEFAULT_PY: dict[DataType, tuple[type, ...]] = {
    DataType.BOOL: (bool,),
    DataType.FLOAT: (float, int),
    DataType.DOUBLE: (float, int),
    DataType.VARCHAR: (str,),
    DataType.TIMESTAMPTZ: (int,),  # microseconds since the epoch, UTC (ISO text is parsed on the way in)
}


# Milvus's names of the types, for messages that match its wording
_MILVUS_TYPE = {
    DataType.BOOL: "Bool",
    DataType.INT8: "Int8",
    DataType.INT16: "Int16",
    DataType.INT32: "Int32",
    DataType.INT64: "Int64",
    DataType.FLOAT: "Float",
    DataType.DOUBLE: "Double",
    DataType.VARCHAR: "VarChar",
    DataType.ARRAY: "Array",
    DataType.JSON: "JSON",
}
_VALUE_TYPE = {bool: "Bool", int: "Int64", float: "Double", str: "VarChar"}


def _validate_default(f: FieldSchema) -> None:
    """Milvus's checks on a default value: a scalar field that is not the primary key, a value of
    the field's type, in range, and within max_length."""
    value = f.default_value
    if f.is_primary:
        raise SchemaError(
            f"primary field not support default_value, type:{f.dtype.name}, name:{f.name}", field=f.name
        )
    if f.dtype.is_vector or f.dtype == DataType.ARRAY:
        raise SchemaError(
            f"type not support default_value, type:{_MILVUS_TYPE.get(f.dtype, f.dtype.name)} "
            f"(field {f.name} is {f.dtype.name})",
            field=f.name,
        )
    if f.dtype == DataType.JSON:
        return  # walvus keeps JSON defaults (Milvus has none): any JSON value
    bits = _INT_RANGE.get(f.dtype)
    ok = (
        isinstance(value, int) and not isinstance(value, bool)
        if bits
        else isinstance(value, _DEFAULT_PY.get(f.dtype, ()))
        and (f.dtype == DataType.BOOL or not isinstance(value, bool))
    )
    if not ok:
        raise SchemaError(
            f"type ({_MILVUS_TYPE.get(f.dtype, f.dtype.name)}) of field ({f.name}) is not equal to the "
            f"type(DataType_{_VALUE_TYPE.get(type(value), type(value).__name__)}) of default_value {value!r}",
            field=f.name,
        )
    if bits:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if not low <= value <= high:
            raise SchemaError(
                f"field {f.name!r}: default_value [{value} out of range {low} <= value <= {high}]",
                field=f.name,
            )
    if f.dtype == DataType.VARCHAR and f.max_length and len(value.encode()) > f.max_length:
        raise SchemaError(
            f"field {f.name!r}: the length ({len(value.encode())}) of string exceeds max length "
            f"({f.max_length}) in default_value",
            field=f.name,
        )
