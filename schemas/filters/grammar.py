"""Milvus boolean-expression grammar (LALR, lark), the cached parser and literal decoding.

Precedence, loosest first: ``or`` < ``and`` < ``not`` < predicates (comparisons, ``in``, ``like``,
``is null``, ``exists``) < ``+ -`` < ``* / %`` < unary ``- +`` < ``**`` < atoms.  ``not`` binds looser
than a comparison, so ``not a > 1`` means ``not (a > 1)``.
"""

from __future__ import annotations

import functools
import re

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .errors import FilterError

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr                 -> not_
         | predicate
?predicate: arith
          | arith (CMP_OP arith)+        -> compare
          | arith _IN arith              -> in_
          | arith _NOT _IN arith         -> not_in
          | arith _LIKE arith            -> like
          | arith _IS _NULL              -> is_null
          | arith _IS _NOT _NULL         -> is_not_null
          | _EXISTS arith                -> exists
?arith: term
      | arith ADD_OP term                -> binop
?term: factor
     | term MUL_OP factor                -> binop
?factor: ADD_OP factor                   -> unary
       | power
?power: atom
      | atom POW_OP factor               -> binop
?atom: INT                               -> int_
     | ISO STRING                        -> iso_
     | INTERVAL STRING                   -> interval_
     | FLOAT                             -> float_
     | STRING                            -> string
     | TRUE                              -> true_
     | FALSE                             -> false_
     | "{" NAME "}"                      -> template
     | "(" or_expr ")"
     | "[" (or_expr ("," or_expr)* ","?)? "]"    -> list_
     | NAME "(" (or_expr ("," or_expr)*)? ")"    -> call
     | NAME ("[" (STRING | INT) "]")*            -> path

_OR.2: /(?i:or)\b|\|\|/
_AND.2: /(?i:and)\b|&&/
_NOT.2: /(?i:not)\b|!(?!=)/
_IN.2: /(?i:in)\b/
_LIKE.2: /(?i:like)\b/
_IS.2: /(?i:is)\b/
_NULL.2: /(?i:null)\b/
_EXISTS.2: /(?i:exists)\b/
ISO.2: /(?i:iso)\b/
INTERVAL.2: /(?i:interval)\b/
TRUE.2: /(?i:true)\b/
FALSE.2: /(?i:false)\b/
CMP_OP: /==|!=|<=|>=|<|>/
POW_OP.3: "**"
MUL_OP: /[*\/%]/
ADD_OP: /[+-]/
FLOAT.2: /(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+[eE][+-]?\d+/
INT: /0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+/
STRING: /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/s
NAME: /\$meta\b|[A-Za-z_][A-Za-z0-9_]*/

%ignore /\s+/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)

# Terminals that can start a value; seeing any of them among the expected ones reads "a value".
_VALUE_START = {
    "ISO",
    "INTERVAL",
    "NAME",
    "INT",
    "FLOAT",
    "STRING",
    "TRUE",
    "FALSE",
    "LPAR",
    "LSQB",
    "LBRACE",
    "ADD_OP",
}
_OPERATORS = {"CMP_OP", "MUL_OP", "POW_OP", "_AND", "_OR", "_IN", "_LIKE", "_IS"}
_NAMED = {
    "RPAR": "')'",
    "RSQB": "']'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "_NULL": "'null'",
    "_IN": "'in'",
    "$END": "end of expression",
}


def parse(expr: str) -> Tree:
    """Parse ``expr`` into a lark tree (cached per expression string); raise FilterError on bad syntax."""
    try:
        return _parse_cached(expr)
    except UnexpectedInput as exc:
        raise _syntax_error(expr, exc) from None


@functools.lru_cache(maxsize=4096)
def _parse_cached(expr: str) -> Tree:
    return _PARSER.parse(expr)


def _describe_expected(expected: set[str]) -> str:
    parts: list[str] = []
    if "FLOAT" in expected:
        parts.append("a value")
    elif expected and expected <= {"STRING", "INT"}:
        parts.append("a string or integer key")
    elif expected == {"NAME"}:
        parts.append("a name")
    operators = expected & (_OPERATORS | {"ADD_OP"}) if "FLOAT" not in expected else set()
    for name in ("RPAR", "RSQB", "RBRACE", "COMMA", "_NULL", "_IN"):
        if name in expected and not (name == "_IN" and operators - {"_IN"}):
            parts.append(_NAMED[name])
    if operators - {"_IN", "_AND", "_OR"}:
        parts.append("an operator")
    elif operators & {"_AND", "_OR"}:
        parts.append("'and' or 'or'")
    if "$END" in expected:
        parts.append(_NAMED["$END"])
    return " or ".join(parts) if parts else "something else"


def _syntax_error(expr: str, exc: UnexpectedInput) -> FilterError:
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        try:  # the precise set; exc.expected can be wider after LALR default reductions
            expected = set(exc.interactive_parser.accepts())
        except Exception:  # pragma: no cover - defensive, accepts() re-runs the parser
            expected = set(exc.expected)
        if tok.type == "$END":
            col = len(expr.rstrip()) + 1
            what = "unexpected end of expression"
        else:
            col = tok.column
            what = f"unexpected {tok.value!r}"
        return FilterError(expr, f"{what} at column {col}; expected {_describe_expected(expected)}", col)
    if isinstance(exc, UnexpectedCharacters):
        col = exc.column
        char = exc.char
        if char in "\"'":
            return FilterError(expr, f"unterminated string starting at column {col}", col)
        return FilterError(expr, f"unexpected character {char!r} at column {col}", col)
    col = getattr(exc, "column", None)
    return FilterError(expr, f"syntax error at column {col}", col)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", '"': '"', "'": "'", "/": "/"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)", re.S)


def _unescape_one(m: re.Match[str]) -> str:
    s = m.group(1)
    if s in _ESCAPES:
        return _ESCAPES[s]
    if len(s) > 1:
        return chr(int(s[1:], 16))
    return "\\" + s  # unknown escapes keep their backslash (so like-patterns can use \% and \_)


def decode_string(tok: Token) -> str:
    """The value of a STRING token: quotes stripped, backslash escapes resolved."""
    out = _ESCAPE_RE.sub(_unescape_one, str(tok)[1:-1])
    if any("\ud800" <= c <= "\udfff" for c in out):  # \uXXXX surrogate pairs
        out = out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return out


def decode_int(tok: Token) -> int:
    """The value of an INT token; ``0x``/``0o``/``0b`` prefixes and Go-style leading-zero octal."""
    s = str(tok)
    if len(s) > 1 and s[0] == "0" and s[1].isdigit():
        return int(s, 8)  # raises ValueError for 08/09: reported by the caller
    return int(s, 0)


def position(node: Tree | Token) -> int | None:
    """The 1-based column where a tree or token starts, when lark recorded it."""
    if isinstance(node, Token):
        return node.column
    meta = node.meta
    return None if meta.empty else meta.column
