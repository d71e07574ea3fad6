"""Result checks for every construct of the Milvus filter language, on a small hand-made table."""

from __future__ import annotations

import pickle

import numpy as np
import orjson
import pyarrow as pa
import pytest

from schemas.filters import CompiledFilter, FilterError, FilterField, FilterSchema, compile_filter

SCHEMA = FilterSchema.of(
    [
        FilterField("id", "INT64"),
        FilterField("age", "INT32", nullable=True),
        FilterField("score", "FLOAT"),
        FilterField("price", "DOUBLE", nullable=True),
        FilterField("name", "VARCHAR", nullable=True),
        FilterField("flag", "BOOL", nullable=True),
        FilterField("meta", "JSON", nullable=True),
        FilterField("tags", "ARRAY", "VARCHAR"),
        FilterField("nums", "ARRAY", "INT64", nullable=True),
        FilterField("fl", "ARRAY", "FLOAT"),
        FilterField("vec", "FLOAT_VECTOR"),
    ],
    dynamic=True,
)
META_DOCS = [
    {"a": 1, "b": "x", "arr": [1, 2], "o": {"p": 5}, "t": True},
    {"a": "s", "arr": ["x", True], "o": {"p": "q"}, "t": False},
    None,
    {"a": 2.5, "arr": [3, 1.0], "o": {"p": 7, "0": "zero"}, "n": None},
    {"b": None, "arr": [[1, 2], 4], "t": 1},
    {"a": -3, "b": "y%z", "arr": "notalist"},
]
DYN = ['{"color": "red", "n": 3}', '{"color": "blue", "n": "3"}', None, "", '{"n": 7, "k": [1]}', "{}"]
TABLE = pa.table(
    {
        "id": pa.array([0, 1, 2, 3, 4, 5], pa.int64()),
        "age": pa.array([10, None, 30, 40, 50, -7], pa.int32()),
        "score": pa.array([0.1, 0.5, 1.5, 2.5, 3.5, -1.0], pa.float32()),
        "price": pa.array([1.0, 2.0, None, 4.0, 5.5, 0.0]),
        "name": pa.array(["alice", "bob", None, "anna", "carl", "a_b%c\n"]),
        "flag": pa.array([True, False, True, None, True, False]),
        "meta": pa.array([None if d is None else orjson.dumps(d).decode() for d in META_DOCS]),
        "tags": pa.array([["x", "y"], [], ["z"], ["x"], ["y", "z"], ["x", "z"]]),
        "nums": pa.array([[1, 2, 3], None, [4], [], [5, 1], [2, 2]], pa.list_(pa.int64())),
        "fl": pa.array([[0.1], [0.5, 1.5], [], [2.5], [0.1, 0.2], [1.0]], pa.list_(pa.float32())),
        "vec": pa.array([[0.0, 1.0]] * 6, pa.list_(pa.float32(), 2)),
        "$meta": pa.array(DYN),
    }
)


def ids(expr: str, params: dict | None = None, table: pa.Table = TABLE) -> list[int]:
    mask = compile_filter(expr, SCHEMA, params).evaluate(table)
    assert mask.dtype == np.bool_ and len(mask) == table.num_rows
    return [i for i, hit in zip(table.column("id").to_pylist(), mask, strict=True) if hit]


CASES = [
    # literals and comparisons
    ("age > 20", [2, 3, 4]),
    ("age >= 30", [2, 3, 4]),
    ("age < 30", [0, 5]),
    ("age <= 10", [0, 5]),
    ("age == 40", [3]),
    ("age != 40", [0, 2, 4, 5]),
    ("20 < age", [2, 3, 4]),
    ("age > 0x1E", [3, 4]),
    ("age > 0b11110", [3, 4]),
    ("age > 0o36", [3, 4]),
    ("age > 036", [3, 4]),  # Go-style octal, as Milvus
    ("price > 1e0", [1, 3, 4]),
    ("price >= 2.", [1, 3, 4]),
    ("price < .5", [5]),
    ("age > 29.5", [2, 3, 4]),
    ("price == 4", [3]),
    ("id == age", []),
    ("age > id * 10", [0, 2, 3, 4]),
    ('name == "bob"', [1]),
    ("name == 'bob'", [1]),
    ('name != "bob"', [0, 3, 4, 5]),
    ('name > "b"', [1, 4]),
    ('name == "a_b%c\\n"', [5]),
    ("flag == true", [0, 2, 4]),
    ("flag == True", [0, 2, 4]),
    ("flag == TRUE", [0, 2, 4]),
    ("flag != false", [0, 2, 4]),
    ("flag == FALSE", [1, 5]),
    ("flag", [0, 2, 4]),
    ("not flag", [1, 5]),
    ("true", [0, 1, 2, 3, 4, 5]),
    ("false", []),
    ("1 < 2", [0, 1, 2, 3, 4, 5]),
    # ranges
    ("10 < age < 50", [2, 3]),
    ("10 <= age <= 50", [0, 2, 3, 4]),
    ("50 > age >= 30", [2, 3]),
    ("0 < id * 2 <= 4", [1, 2]),
    # logic, precedence, spellings
    ("age > 20 and id < 4", [2, 3]),
    ("age > 20 AND id < 4", [2, 3]),
    ("age > 20 && id < 4", [2, 3]),
    ("id == 0 or id == 5", [0, 5]),
    ("id == 0 OR id == 5", [0, 5]),
    ("id == 0 || id == 5", [0, 5]),
    ("not id > 1", [0, 1]),
    ("NOT id > 1", [0, 1]),
    ("!(id > 1)", [0, 1]),
    ("! id > 1", [0, 1]),
    ("id == 0 or id == 1 and id == 2", [0]),
    ("(id == 0 or id == 1) and id == 1", [1]),
    ("not id == 0 and not id == 1", [2, 3, 4, 5]),
    ("not (id == 0 or id == 1)", [2, 3, 4, 5]),
    # three-valued logic: null rows stay out, even under not
    ("not (age > 20)", [0, 5]),
    ("age > 20 or id == 1", [1, 2, 3, 4]),
    ("not (age > 20 and id == 1)", [0, 2, 3, 4, 5]),
    ("not (age > 20 or id == 2)", [0, 5]),
    ("flag or id == 3", [0, 2, 3, 4]),
    # in / not in
    ("id in [1, 3, 5]", [1, 3, 5]),
    ("id IN [1, 3, 5,]", [1, 3, 5]),
    ("id not in [1, 3, 5]", [0, 2, 4]),
    ("id NOT IN [1, 3, 5]", [0, 2, 4]),
    ("age in [10, 30]", [0, 2]),
    ("age not in [10, 30]", [3, 4, 5]),
    ("age in []", []),
    ('name in ["bob", "carl", "zed"]', [1, 4]),
    ('name not in ["bob"]', [0, 3, 4, 5]),
    ("price in [1, 5.5]", [0, 4]),
    ("flag in [false]", [1, 5]),
    ("score in [0.1, 3.5]", [0, 4]),
    # like
    ('name like "a%"', [0, 3, 5]),
    ('name LIKE "%l"', [4]),
    ('name like "%ar%"', [4]),
    ('name like "_ob"', [1]),
    ('name like "a__%"', [0, 3, 5]),
    ('name like "a%e"', [0]),
    ('name like "%"', [0, 1, 3, 4, 5]),
    ('name like "bob"', [1]),
    ('name like "a\\_b%"', [5]),
    ('name like "a\\\\_b%"', [5]),
    ('name like "%\\%%"', [5]),
    ('name like "%c_"', [0, 5]),  # _ matches the newline too
    ('not name like "a%"', [1, 4]),
    ('meta["b"] like "y%"', [5]),
    ('color like "r%"', [0]),
    # is null
    ("age is null", [1]),
    ("age IS NULL", [1]),
    ("age is not null", [0, 2, 3, 4, 5]),
    ("age IS NOT NULL", [0, 2, 3, 4, 5]),
    ("id is null", []),
    ("nums is null", [1]),
    ("meta is null", [2]),
    ('meta["b"] is null', [1, 2, 3, 4]),
    ('meta["b"] is not null', [0, 5]),
    ('meta["n"] is null', [0, 1, 2, 3, 4, 5]),
    ("color is null", [2, 3, 4, 5]),
    ("nums[1] is null", [1, 2, 3]),
    # exists
    ('exists meta["b"]', [0, 4, 5]),
    ('exists(meta["n"])', [3]),
    ('EXISTS meta["o"]["p"]', [0, 1, 3]),
    ("exists color", [0, 1]),
    ('exists $meta["k"]', [4]),
    # JSON paths: missing keys and type mismatches are False, != is True
    ('meta["a"] == 1', [0]),
    ('meta["a"] == 1.0', [0]),
    ('meta["a"] > 1', [3]),
    ('meta["a"] < 100', [0, 3, 5]),
    ('meta["a"] != 1', [1, 3, 4, 5]),
    ('not (meta["a"] > 1)', [0, 1, 4, 5]),
    ('meta["a"] == "s"', [1]),
    ('meta["a"] > "a"', [1]),
    ('meta["t"] == true', [0]),
    ('meta["t"]', [0]),
    ('not meta["t"]', [1, 3, 4, 5]),
    ('meta["o"]["p"] > 5', [3]),
    ('meta["o"]["p"] == "q"', [1]),
    ('meta["arr"][0] == 1', [0]),
    ('meta["arr"]["0"] == 1', [0]),  # JSON pointer: a digit key indexes an array
    ('meta["o"][0] == "zero"', [3]),  # ... and an integer index reads an object key
    ('meta["arr"][5] == 1', []),
    ('meta["a"] in [1, "s"]', [0, 1]),
    ('meta["a"] not in [1, "s"]', [3, 4, 5]),
    ('meta["a"] + 1 == 2', [0]),
    ('meta["a"] * 2 > 4', [3]),
    ('-meta["a"] == 3', [5]),
    ('meta["a"] > age', [5]),
    ('meta["a"] < age', [0, 3]),
    ('meta["a"] / 2 == 0', [0]),  # JSON integers divide as integers, row by row
    ('meta["a"] / 2 == -1', [5]),
    ('meta["a"] / 2 == 1.25', [3]),
    ('meta["a"] % 2 == -1', [5]),
    ('meta["a"] % 2 == 0.5', [3]),
    ('meta["arr"] == meta["arr"]', [0, 1, 3, 4, 5]),
    ('meta["o"] == meta["o"]', [0, 1, 3]),
    ('meta["o"] != meta["o"]', [4, 5]),
    ('meta["arr"] == [1, 2]', [0]),
    ('meta["arr"] != [1, 2]', [1, 3, 4, 5]),
    ('$meta["color"] == "red"', [0]),
    ('color == "red"', [0]),
    ("n == 3", [0]),
    ('n == "3"', [1]),
    ("n > 2", [0, 4]),
    ("n + 1 > 7", [4]),
    ("k[0] == 1", [4]),
    ('$meta["k"][0] == 1', [4]),
    # json_contains*
    ('json_contains(meta["arr"], 1)', [0, 3]),
    ('JSON_CONTAINS(meta["arr"], 1)', [0, 3]),
    ('json_contains(meta["arr"], true)', [1]),
    ('json_contains(meta["arr"], "x")', [1]),
    ('json_contains(meta["arr"], [1, 2])', [4]),
    ('json_contains_all(meta["arr"], [1, 3])', [3]),
    ('json_contains_all(meta["arr"], [])', [0, 1, 3, 4]),
    ('json_contains_any(meta["arr"], ["x", 2, 4])', [0, 1, 4]),
    ('json_contains_any(meta["arr"], [])', []),
    ('not json_contains(meta["arr"], 1)', [1, 4, 5]),
    ("json_contains(k, 1)", [4]),
    ('array_contains(meta["arr"], 2)', [0]),
    # arrays
    ('array_contains(tags, "x")', [0, 3, 5]),
    ('ARRAY_CONTAINS(tags, "x")', [0, 3, 5]),
    ('array_contains_all(tags, ["x", "z"])', [5]),
    ('array_contains_any(tags, ["y", "q"])', [0, 4]),
    ("array_contains(nums, 2)", [0, 5]),
    ("array_contains_all(nums, [1, 5])", [4]),
    ("array_contains_any(nums, [4, 5])", [2, 4]),
    ("not array_contains(nums, 1)", [2, 3, 5]),
    ("array_contains_all(nums, [])", [0, 2, 3, 4, 5]),
    ("json_contains(nums, 4)", [2]),
    ("array_contains(fl, 0.1)", [0, 4]),
    ("array_length(nums) == 0", [3]),
    ("array_length(nums) >= 2", [0, 4, 5]),
    ("ARRAY_LENGTH(tags) == 2", [0, 4, 5]),
    ('array_length(meta["arr"]) == 2', [0, 1, 3, 4]),
    ("nums[0] == 1", [0]),
    ("nums[0] > 1", [2, 4, 5]),
    ("nums[2] != 3", [2, 3, 4, 5]),
    ("nums[1] + nums[0] == 4", [5]),
    ('tags[0] == "x"', [0, 3, 5]),
    ('tags[1] like "%z"', [4, 5]),
    ("fl[0] == 0.1", [0, 4]),
    ("nums == [1, 2, 3]", [0]),
    ("nums == []", [3]),
    ("nums != [4]", [0, 3, 4, 5]),
    ('tags == ["x"]', [3]),
    ("fl == [0.1, 0.2]", [4]),
    # arithmetic, C semantics for integer / and %
    ("id + 1 == 3", [2]),
    ("id - 1 == 3", [4]),
    ("id * 3 == 9", [3]),
    ("age / 20 == 1", [2]),
    ("age / 20 == 0", [0, 5]),
    ("age % 20 == 10", [0, 2, 4]),
    ("age % 2 == -1", [5]),
    ("age / 2 == -3", [5]),
    ("price / 2 == 0.5", [0]),
    ("price % 2 == 1.5", [4]),
    ("id / price == 0.5", [1]),
    ("id ** 2 == 16", [4]),
    ("2 ** id == 8", [3]),
    ("-id == -2", [2]),
    ("- -id == 2", [2]),
    ("+id == 2", [2]),
    ("id + 2 * 3 == 8", [2]),
    ("(id + 2) * 3 == 9", [1]),
    ("-2 ** 2 == -4", [0, 1, 2, 3, 4, 5]),
    ("7 / 2 == 3", [0, 1, 2, 3, 4, 5]),
    ("-7 % 3 == -1", [0, 1, 2, 3, 4, 5]),
    ("id * 1.5 > 5", [4, 5]),
    # float32 columns compare in float32, like Milvus
    ("score == 0.1", [0]),
    ("score > 0.1", [1, 2, 3, 4]),
    ("score < 0", [5]),
    # empty
    ("", [0, 1, 2, 3, 4, 5]),
    ("   ", [0, 1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize(("expr", "expected"), CASES)
def test_filter_results(expr: str, expected: list[int]) -> None:
    assert ids(expr) == expected


@pytest.mark.parametrize(
    ("expr", "params", "expected"),
    [
        ("id in {ids}", {"ids": [1, 2]}, [1, 2]),
        ("id in {ids}", {"ids": (4,)}, [4]),
        ("id in {ids}", {"ids": np.array([0, 5])}, [0, 5]),
        ("id == {x}", {"x": np.int64(3)}, [3]),
        ("age > {lo} and age < {hi}", {"lo": 10, "hi": 45.5}, [2, 3]),
        ("name == {n}", {"n": "bob"}, [1]),
        ("name like {p}", {"p": "a%"}, [0, 3, 5]),
        ("flag == {f}", {"f": False}, [1, 5]),
        ("array_contains_any(nums, {v})", {"v": [4, 5]}, [2, 4]),
        ("id in [{a}, {b}]", {"a": 0, "b": 1}, [0, 1]),
        ('meta["a"] in {v}', {"v": [1, "s"]}, [0, 1]),
    ],
)
def test_template_params(expr: str, params: dict, expected: list[int]) -> None:
    assert ids(expr, params) == expected


ERRORS = [
    ("age >> 3", "unexpected '>' at column 6; expected a value"),
    ("(age > 3", "unexpected end of expression at column 9; expected ')'"),
    ("age > 3)", "unexpected ')' at column 8; expected end of expression"),
    ("((age > 3) and id < 2", "expected ')'"),
    ("age = 3", "unexpected character '=' at column 5"),
    ('name == "bob', "unterminated string starting at column 9"),
    ("age > 3 and", "unexpected end of expression at column 12; expected a value"),
    ("age 3", "unexpected '3' at column 5; expected an operator"),
    ("age not 3", "expected 'in'"),
    ("age is 3", "expected 'null'"),
    ("id in [1, 2", "expected ']' or ','"),
    ("meta[a] == 1", "expected a string or integer key"),
    ("and id > 1", "unexpected 'and' at column 1"),
    ("age <> 3", "unexpected '>' at column 6"),
    ("id == {1}", "expected a name"),
    ("unknown_f > 1", None),  # dynamic schema: a dynamic key, valid
    ("name > 5", "cannot compare VARCHAR field 'name' with integer 5 using '>' at column 6"),
    ("5 < name", "cannot compare VARCHAR field 'name' with integer 5"),
    ('age == "x"', "cannot compare INT32 field 'age' with string 'x'"),
    ("flag > true", "booleans only support == and !="),
    ("flag == 1", "cannot compare BOOL field 'flag' with integer 1"),
    ("tags == 1", "cannot compare ARRAY field 'tags' with integer 1"),
    ('tags == ["a", 1]', "integer 1 does not match the VARCHAR elements of ARRAY field 'tags'"),
    ('age like "a%"', "'like' needs a VARCHAR or JSON operand, got INT32 field 'age'"),
    ("name like 5", "'like' needs a string pattern, got integer 5"),
    ("array_contains(age, 1)", "array_contains() needs an ARRAY or JSON field, got INT32 field 'age'"),
    ("array_contains(tags, 1)", "integer 1 does not match the VARCHAR elements of ARRAY field 'tags'"),
    ('array_contains_all(tags, "x")', "needs a list as second argument"),
    ("array_contains(tags)", "array_contains() takes 2 arguments, got 1"),
    ("array_contains(tags, name)", "needs a constant"),
    ("array_length(age) == 1", "array_length() needs an ARRAY or JSON field, got INT32 field 'age'"),
    ("array_length(tags)", "array_length() is not a boolean expression"),
    ("json_contains(tags, 'x') + 1 > 0", "json_contains() is a predicate, not a value"),
    ("frobnicate(age)", "unknown function 'frobnicate'"),
    ("id == {x}", "unknown template parameter {x}"),
    ("vec == 1", "vector field 'vec' cannot be used in a filter"),
    ('age["a"] == 1', "INT32 field 'age' cannot be indexed"),
    ('tags["a"] == "x"', "ARRAY field 'tags' takes one integer index"),
    ("id + name > 1", "'+' needs numeric operands, got VARCHAR field 'name'"),
    ("-name == 1", "needs a number"),
    ("id / 0 == 1", "division by zero at column 6"),
    ("id % (2 - 2) == 1", "division by zero"),
    ("age", "INT32 field 'age' is not a boolean expression"),
    ("not age", "INT32 field 'age' is not a boolean expression at column 5"),
    ("'abc'", "string 'abc' is not a boolean expression"),
    ("(age > 1) + 1 > 0", "expected a value, got a boolean expression"),
    ("id in [1, 'a']", "list element 'a' does not match INT64 field 'id'"),
    ("id in 5", "'in' needs a list of constants, got integer 5"),
    ("id in [age]", "list elements must be constants"),
    ("tags in ['x']", "'in' cannot be applied to ARRAY field 'tags'"),
    ("exists age", "'exists' needs a JSON key"),
    ("(id + 1) is null", "'is null' needs a field"),
    ("1 < age > 3", "a chained comparison must be a range"),
    ("1 < age < 3 < 4", "a chained comparison must be a range"),
    ("age == 09", "invalid integer '09'"),
    ('meta["a"] > true', "booleans only support == and !="),
    ("meta > true", "booleans only support == and !="),
    ("meta like 5", "'like' needs a string pattern"),
    ("meta[09] == 1", "invalid integer index"),
    ("meta == tags", "cannot compare JSON field 'meta' with ARRAY field 'tags'"),
    ('meta["a"] == tags', """cannot compare JSON field 'meta["a"]' with ARRAY field 'tags'"""),
    ("color == tags", "cannot compare dynamic field 'color' with ARRAY field 'tags'"),
    ("tags[0] + 1 > 0", "'+' needs numeric operands, got element of ARRAY field 'tags'"),
]


@pytest.mark.parametrize(("expr", "message"), ERRORS)
def test_errors(expr: str, message: str | None) -> None:
    if message is None:
        compile_filter(expr, SCHEMA)
        return
    with pytest.raises(FilterError) as info:
        compile_filter(expr, SCHEMA)
    assert message in str(info.value)
    assert str(info.value).startswith(f"invalid filter '{expr}': ")
    assert info.value.expr == expr


def test_error_details() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("age >> 3", SCHEMA)
    err = info.value
    assert str(err) == "invalid filter 'age >> 3': unexpected '>' at column 6; expected a value"
    assert (err.expr, err.column) == ("age >> 3", 6)
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.expr, copy.column) == (str(err), err.expr, err.column)


def test_unknown_field_without_dynamic() -> None:
    static = FilterSchema(SCHEMA.fields, dynamic=False)
    with pytest.raises(FilterError, match="unknown field 'color'"):
        compile_filter('color == "red"', static)
    with pytest.raises(FilterError, match=r"unknown field '\$meta' \(the dynamic field is not enabled\)"):
        compile_filter('$meta["color"] == "red"', static)
    assert compile_filter("id > 1", static).fields == {"id"}


def test_deeply_nested_expression() -> None:
    assert ids("(" * 50 + "id == 1" + ")" * 50) == [1]
    assert ids(" or ".join(f"id == {i}" for i in range(2000))) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter("not " * 5000 + "id == 1", SCHEMA)


def test_bad_template_value() -> None:
    with pytest.raises(FilterError, match=r"template parameter \{x\}: objects are not supported"):
        compile_filter("id == {x}", SCHEMA, {"x": {"a": 1}})
    with pytest.raises(FilterError, match="unsupported value of type"):
        compile_filter("id == {x}", SCHEMA, {"x": object()})
    with pytest.raises(FilterError, match="unknown template parameter"):
        compile_filter("id == {x}", SCHEMA, None)


def test_string_escapes() -> None:
    table = pa.table({"id": [0, 1, 2, 3], "name": ['say "hi"', "it's", "tab\there", "é"]})
    assert ids('name == "say \\"hi\\""', table=table) == [0]
    assert ids("name == 'it\\'s'", table=table) == [1]
    assert ids('name == "it\'s"', table=table) == [1]
    assert ids('name == "tab\\there"', table=table) == [2]
    assert ids('name == "\\u00e9"', table=table) == [3]
    assert ids('name like "%\\"%"', table=table) == [0]


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        ("", set()),
        ("age > 1 and name like 'a%'", {"age", "name"}),
        ('color == "red" or meta["a"] == 1', {"$meta", "meta"}),
        ("nums[0] == 1 or array_length(tags) > 0", {"nums", "tags"}),
        ('exists $meta["k"]', {"$meta"}),
        ("1 == 1", set()),
    ],
)
def test_fields(expr: str, fields: set[str]) -> None:
    assert compile_filter(expr, SCHEMA).fields == frozenset(fields)


@pytest.mark.parametrize(
    ("expr", "field", "values"),
    [
        ("id == 3", "id", {3}),
        ("3 == id", "id", {3}),
        ("id in [1, 2, 3]", "id", {1, 2, 3}),
        ("id in [1, 2, 3] and id in [2, 3, 4]", "id", {2, 3}),
        ("id in [1, 2] and age > 3", "id", {1, 2}),
        ("(id == 1 or id == 2) and name == 'x'", "id", {1, 2}),
        ("id == 1 or id in [5, 6]", "id", {1, 5, 6}),
        ("id == 1 or age == 2", "id", None),
        ("id == 1 and id == 2", "id", set()),
        ("id > 3", "id", None),
        ("id != 3", "id", None),
        ("not id == 3", "id", None),
        ("id not in [1, 2]", "id", None),
        ("id == 2.0", "id", {2}),
        ("id in [2.5, 3]", "id", {3}),
        ("name in ['a', 'b']", "name", {"a", "b"}),
        ("name == 'a'", "id", None),
        ("", "id", None),
        ("false", "id", set()),
        ("flag == true", "flag", {True}),
        ('color == "red"', "color", None),
        ("id + 0 == 1", "id", None),
    ],
)
def test_values_for(expr: str, field: str, values: set | None) -> None:
    got = compile_filter(expr, SCHEMA).values_for(field)
    assert got == (None if values is None else frozenset(values))


def test_chunked_and_sliced_tables() -> None:
    chunked = pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2, 3), TABLE.slice(5)])
    assert chunked.column("id").num_chunks == 3
    sliced = TABLE.slice(1, 4)
    for expr, _ in CASES:
        flt = compile_filter(expr, SCHEMA)
        full = flt.evaluate(TABLE)
        assert list(flt.evaluate(chunked)) == list(full), expr
        assert list(flt.evaluate(sliced)) == list(full[1:5]), expr


def test_empty_table_and_missing_columns() -> None:
    empty = TABLE.slice(0, 0)
    for expr in ("age > 1", 'color == "red"', "array_contains(nums, 1)", "nums[0] == 1", ""):
        assert compile_filter(expr, SCHEMA).evaluate(empty).shape == (0,)
    narrow = pa.table({"id": [1, 2]})
    assert list(compile_filter("age is null", SCHEMA).evaluate(narrow)) == [True, True]
    assert list(compile_filter("color is null", SCHEMA).evaluate(narrow)) == [True, True]
    assert list(compile_filter("nums is null", SCHEMA).evaluate(narrow)) == [True, True]
    with pytest.raises(FilterError, match="column 'score' is missing from the table"):
        compile_filter("score > 1", SCHEMA).evaluate(narrow)


def test_dictionary_and_large_string_columns() -> None:
    table = pa.table(
        {
            "id": [0, 1, 2],
            "name": pa.array(["a", "b", "a"]).dictionary_encode(),
            "meta": pa.array(['{"a": 1}', None, '{"a": 2}'], pa.large_string()),
        }
    )
    assert ids('name == "a" and meta["a"] > 1', table=table) == [2]


def test_invalid_json_text_is_missing() -> None:
    table = pa.table({"id": [0, 1, 2], "meta": ['{"a": 1}', "{not json", '{"a": 123456789012345678901234}']})
    assert ids('meta["a"] > 0', table=table) == [0, 2]
    assert ids('meta["a"] is null', table=table) == [1]


def test_reusable_and_repr() -> None:
    flt = compile_filter("id > 2", SCHEMA)
    assert isinstance(flt, CompiledFilter)
    assert repr(flt) == "CompiledFilter('id > 2')"
    assert list(flt.evaluate(TABLE)) == list(flt.evaluate(TABLE))
    assert compile_filter("", SCHEMA).matches_all and not flt.matches_all


def test_parse_cache() -> None:
    from schemas.filters import grammar

    expr = "id > 12345 and age < 3"
    compile_filter(expr, SCHEMA)
    before = grammar._parse_cached.cache_info().hits
    compile_filter(expr, SCHEMA, {"unused": 1})
    assert grammar._parse_cached.cache_info().hits == before + 1


def test_vectorised_on_a_million_rows() -> None:
    import time

    n = 1_000_000
    rng = np.random.default_rng(7)
    names = np.array(["alice", "bob", "anna", "carl", "amy"])
    table = pa.table(
        {"id": np.arange(n), "age": rng.integers(0, 80, n), "name": names[rng.integers(0, 5, n)]}
    )
    schema = FilterSchema.of(
        [FilterField("id", "INT64"), FilterField("age", "INT64"), FilterField("name", "VARCHAR")]
    )
    flt = compile_filter('age > 30 and name like "a%"', schema)
    flt.evaluate(table)
    start = time.perf_counter()
    mask = flt.evaluate(table)
    elapsed = time.perf_counter() - start
    expected = (table.column("age").to_numpy() > 30) & np.char.startswith(
        table.column("name").to_numpy(zero_copy_only=False).astype(str), "a"
    )
    assert np.array_equal(mask, expected)
    assert elapsed < 1.0, f"{elapsed:.3f}s for 1M rows"
