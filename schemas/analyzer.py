"""Text analyzers for full-text search, configured with Milvus's ``analyzer_params`` shapes.

Tokenising is done by tantivy (its Python bindings: the same engine Milvus's analyzers are built
on) and, for text that spaces do not split, by a word segmenter (``schemas/segmenters.py``):
jieba for Chinese, lindera (IPADIC) for Japanese, ICU word breaks for most scripts. Shapes accepted:

- built-ins: ``{"type": "standard" | "english" | "chinese", "stop_words": [...]}``;
  standard = standard tokenizer + lowercase; english = standard tokenizer + lowercase +
  english stemmer + english stop words; chinese = jieba + ``cnalphanumonly``;
- custom: ``{"tokenizer": ..., "filter": [...]}`` with tokenizers ``standard``, ``whitespace``,
  ``jieba`` (``{"type": "jieba", "mode": "search" | "exact"}``), ``icu``,
  ``{"type": "lindera", "dict_kind": "ipadic"}`` and
  ``{"type": "language_identifier", "identifier": "whatlang" | "lingua", "analyzers": {...,
  "default": ...}, "mapping": {...}}`` (``schemas/language_identifier.py``: each text is analyzed
  by the analyzer of its detected language); filters ``lowercase``, ``asciifolding``,
  ``alphanumonly``, ``cnalphanumonly``, ``cncharonly``, ``removepunct``,
  ``{"type": "stop", "stop_words": [...]}`` (``_english_`` and other ``_language_`` lists
  included), ``{"type": "stemmer", "language": ...}``, ``{"type": "length", "max": N}``.

Anything else (other lindera dictionaries, other filters, ...) is refused with a clear error.
One analyzer per row chosen by another field (``multi_analyzer_params``) is
``schemas/multi_analyzer.py``. The standard tokenizer is tantivy's simple tokenizer (split on
anything not alphanumeric). The filters tantivy has run inside tantivy in the given order;
``cnalphanumonly``, ``cncharonly`` and ``removepunct`` only drop tokens, so they run after it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import mmh3
import tantivy

from schemas.exceptions import SchemaError
from schemas.language_identifier import TextAnalyzer, routed_analyzer
from schemas.segmenters import Segmenter, icu_segmenter, jieba_segmenter, lindera_segmenter

if TYPE_CHECKING:
    from schemas.collection import FieldSchema

STOP_LANGUAGES = (
    "danish", "dutch", "english", "finnish", "french", "german", "hungarian",
    "italian", "norwegian", "portuguese", "russian", "spanish", "swedish",
)  # fmt: skip
STEM_LANGUAGES = (*STOP_LANGUAGES, "arabic", "greek", "romanian", "tamil", "turkish")
BUILTIN = {
    "standard": {"tokenizer": "standard", "filter": ["lowercase"]},
    "english": {
        "tokenizer": "standard",
        "filter": [
            "lowercase",
            {"type": "stemmer", "language": "english"},
            {"type": "stop", "stop_words": ["_english_"]},
        ],
    },
    "chinese": {"tokenizer": "jieba", "filter": ["cnalphanumonly"]},
}
_CN_ALNUM = re.compile(r"^[\u4e00-\u9fffA-Za-z0-9]+$")
_CN_CHAR = re.compile(r"^[\u4e00-\u9fff]+$")
_PUNCT = re.compile(r"^[\W_]+$")
_DROP: dict[str, Callable[[str], bool]] = {
    "cnalphanumonly": lambda t: bool(_CN_ALNUM.match(t)),
    "cncharonly": lambda t: bool(_CN_CHAR.match(t)),
    "removepunct": lambda t: not _PUNCT.match(t),
}
_SEP = "\x00"  # joins a segmenter's words for tantivy, whose regex tokenizer splits them again


def term_id(token: str) -> int:
    """A token's dimension in BM25 sparse vectors: its 32-bit MurmurHash3 (seed 0), unsigned."""
    return mmh3.hash(token, 0, signed=False)


@dataclass(frozen=True)
class Analyzer:
    segment: Segmenter | None  # None: tantivy's own tokenizer splits the text
    pipeline: Any  # tantivy.TextAnalyzer
    keep: tuple[Callable[[str], bool], ...]

    def tokens(self, text: str) -> list[str]:
        if not text:
            return []
        if self.segment is not None:
            text = _SEP.join(t.replace(_SEP, "") for t in self.segment(text))
        out = self.pipeline.analyze(text)
        for keep in self.keep:
            out = [t for t in out if keep(t)]
        return out

    def tokens_of(self, texts: Sequence[str | None]) -> list[list[str]]:
        return [self.tokens(t) if t else [] for t in texts]


def parse_params(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    if raw is None or raw == "" or raw == {}:
        return {"type": "standard"}
    if isinstance(raw, dict):
        return raw
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise SchemaError(f"analyzer_params is not valid JSON: {raw!r}") from exc
    if not isinstance(params, dict):
        raise SchemaError(f"analyzer_params must be a JSON object, got {raw!r}")
    return params


def build_analyzer(raw: str | dict[str, Any] | None) -> TextAnalyzer:
    """An analyzer from Milvus's ``analyzer_params`` (a dict or its JSON text); SchemaError if bad."""
    return _cached(json.dumps(parse_params(raw), sort_keys=True))


def analyzer_for_field(f: FieldSchema) -> TextAnalyzer:
    try:
        return build_analyzer(f.analyzer_params)
    except SchemaError as exc:
        raise SchemaError(f"field {f.name!r}: {exc.message}", field=f.name) from None


@lru_cache(maxsize=64)
def _cached(key: str) -> TextAnalyzer:
    params = dict(json.loads(key))
    if "type" in params:
        kind = params.pop("type")
        if kind not in BUILTIN:
            raise SchemaError(f"analyzer type {kind!r} is not supported; use one of {', '.join(BUILTIN)}")
        stop = params.pop("stop_words", None)
        if params:
            raise SchemaError(f"analyzer type {kind}: unknown params {sorted(params)}")
        params = {"tokenizer": BUILTIN[kind]["tokenizer"], "filter": list(BUILTIN[kind]["filter"])}
        if stop is not None:
            params["filter"].append({"type": "stop", "stop_words": stop})
    tokenizer = params.pop("tokenizer", None)
    filters = params.pop("filter", [])
    if params:
        raise SchemaError(
            f"analyzer_params: unknown keys {sorted(params)} (walvus knows type, tokenizer, filter)"
        )
    if tokenizer is None:
        raise SchemaError("analyzer_params needs a type or a tokenizer")
    if isinstance(tokenizer, dict) and tokenizer.get("type") == "language_identifier":
        if filters:
            raise SchemaError(
                "a language_identifier tokenizer takes no filter: give each of its analyzers its own filters"
            )
        return routed_analyzer(tokenizer, build_analyzer)
    segment, base = _tokenizer(tokenizer)
    if not isinstance(filters, list):
        raise SchemaError(f"analyzer filter must be a list, got {filters!r}")
    builder = tantivy.TextAnalyzerBuilder(base)
    keep: list[Callable[[str], bool]] = []
    for flt in filters:
        if isinstance(flt, str) and flt in _DROP:
            keep.append(_DROP[flt])
            continue
        for tf in _filter(flt):
            builder = builder.filter(tf)
    return Analyzer(segment, builder.build(), tuple(keep))


def _tokenizer(spec: Any) -> tuple[Segmenter | None, Any]:
    opts = dict(spec) if isinstance(spec, dict) else {"type": spec}
    kind = opts.pop("type", None)
    if kind == "standard" and not opts:
        return None, tantivy.Tokenizer.simple()
    if kind == "whitespace" and not opts:
        return None, tantivy.Tokenizer.whitespace()
    words = tantivy.Tokenizer.regex(f"[^{_SEP}]+")
    if kind == "jieba":
        mode = opts.pop("mode", "search")
        dicts = opts.pop("dict", ["_default_"])
        hmm = opts.pop("hmm", True)
        if opts or mode not in ("search", "exact") or dicts != ["_default_"] or hmm is not True:
            raise SchemaError(
                f"jieba tokenizer: walvus supports mode search|exact with the default dictionary, got {spec!r}"
            )
        return jieba_segmenter(mode == "search"), words
    if kind == "icu" and not opts:
        return icu_segmenter(), words
    if kind == "lindera":
        dict_kind = opts.pop("dict_kind", None)
        if opts:
            raise SchemaError(
                f"lindera tokenizer: walvus supports dict_kind only (no lindera filters), got {spec!r}"
            )
        return lindera_segmenter(dict_kind), words
    raise SchemaError(
        f"tokenizer {spec!r} is not supported; use standard, whitespace, jieba, icu, lindera or "
        "language_identifier"
    )


def _filter(spec: Any) -> list[Any]:
    if spec == "lowercase":
        return [tantivy.Filter.lowercase()]
    if spec == "asciifolding":
        return [tantivy.Filter.ascii_fold()]
    if spec == "alphanumonly":
        return [tantivy.Filter.alphanum_only()]
    if isinstance(spec, dict):
        opts = dict(spec)
        kind = opts.pop("type", None)
        if kind == "stop":
            words = opts.pop("stop_words", [])
            if opts or not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise SchemaError(f"stop filter needs stop_words: a list of strings, got {spec!r}")
            out = []
            for w in words:
                lang = w[1:-1] if w.startswith("_") and w.endswith("_") and len(w) > 2 else None
                if lang is not None:
                    if lang not in STOP_LANGUAGES:
                        raise SchemaError(f"stop filter: no stop word list {w!r}")
                    out.append(tantivy.Filter.stopword(lang))
            custom = [w for w in words if not (w.startswith("_") and w.endswith("_") and len(w) > 2)]
            if custom:
                out.append(tantivy.Filter.custom_stopword(custom))
            return out
        if kind == "stemmer":
            lang = opts.pop("language", None)
            if opts or lang not in STEM_LANGUAGES:
                raise SchemaError(
                    f"stemmer filter: language must be one of {', '.join(STEM_LANGUAGES)}, got {spec!r}"
                )
            return [tantivy.Filter.stemmer(lang)]
        if kind == "length":
            limit = opts.pop("max", None)
            if opts or not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise SchemaError(f"length filter needs max: a positive integer, got {spec!r}")
            return [tantivy.Filter.remove_long(limit + 1)]
    raise SchemaError(
        f"analyzer filter {spec!r} is not supported; use lowercase, asciifolding, alphanumonly, cnalphanumonly, "
        "cncharonly, removepunct, stop, stemmer or length"
    )
