"""The ``language_identifier`` tokenizer: detect each text's language, analyze it with that language's analyzer.

Shape (Milvus's): ``{"type": "language_identifier", "identifier": "whatlang" | "lingua",
"analyzers": {name: analyzer_params, ..., "default": analyzer_params}, "mapping": {detected: name}}``.
The detector names a language in English (whatlang: "English", "Mandarin", "Japanese", ...;
lingua: "English", "Chinese", "Japanese", ...); ``mapping`` may rename detector names to analyzer
names. A text whose language is not detected, or has no analyzer, gets the ``default`` analyzer.
Detection runs per text, at insert and at search alike.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from schemas.exceptions import SchemaError

IDENTIFIERS = ("whatlang", "lingua")
# whatlang's ISO 639-3 codes and its English names for them (the names Milvus matches analyzers by)
WHATLANG_NAMES = dict(
    zip(
        (
            "epo eng rus cmn spa por ita ben fra deu ukr kat ara hin jpn heb yid pol amh jav kor nob dan "
            "swe fin tur nld hun ces ell bul bel mar kan ron slv hrv srp mkd lit lav est tam vie urd tha "
            "guj uzb pan aze ind tel pes mal ori mya nep sin khm tuk aka zul sna afr lat slk cat tgl hye"
        ).split(),
        (
            "Esperanto English Russian Mandarin Spanish Portuguese Italian Bengali French German Ukrainian "
            "Georgian Arabic Hindi Japanese Hebrew Yiddish Polish Amharic Javanese Korean Bokmal Danish "
            "Swedish Finnish Turkish Dutch Hungarian Czech Greek Bulgarian Belarusian Marathi Kannada "
            "Romanian Slovene Croatian Serbian Macedonian Lithuanian Latvian Estonian Tamil Vietnamese Urdu "
            "Thai Gujarati Uzbek Punjabi Azerbaijani Indonesian Telugu Persian Malayalam Oriya Burmese Nepali "
            "Sinhalese Khmer Turkmen Akan Zulu Shona Afrikaans Latin Slovak Catalan Tagalog Armenian"
        ).split(),
        strict=True,
    )
)
_lock = threading.Lock()


class TextAnalyzer(Protocol):
    def tokens(self, text: str) -> list[str]: ...

    def tokens_of(self, texts: Sequence[str | None]) -> list[list[str]]: ...


Detector = Callable[[str], str | None]


def detector(identifier: str) -> Detector:
    if identifier == "whatlang":
        return _whatlang()
    if identifier == "lingua":
        return _lingua()
    raise SchemaError(
        f"language_identifier: identifier must be one of {', '.join(IDENTIFIERS)}, got {identifier!r}"
    )


def _module(name: str, package: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SchemaError(
            f"language_identifier needs a package that is not installed: pip install {package}"
        ) from exc


@cache
def _whatlang() -> Detector:
    whatlang = _module("whatlang", "whatlang-pyo3==0.6.0")

    def detect(text: str) -> str | None:
        try:
            return WHATLANG_NAMES.get(whatlang.detect(text).lang)
        except ValueError:  # nothing to detect (empty, digits, punctuation)
            return None

    return detect


@cache
def _lingua() -> Detector:
    lingua = _module("lingua", "lingua-language-detector==2.1.1")
    with _lock:
        engine = lingua.LanguageDetectorBuilder.from_all_languages().build()

    def detect(text: str) -> str | None:
        lang = engine.detect_language_of(text)
        return None if lang is None else lang.name.title()

    return detect


@dataclass(frozen=True)
class LanguageRoutedAnalyzer:
    detect: Detector
    analyzers: Mapping[str, TextAnalyzer]  # has "default"
    mapping: Mapping[str, str]

    def pick(self, text: str) -> TextAnalyzer:
        lang = self.detect(text)
        name = self.mapping.get(lang, lang) if lang is not None else None
        return self.analyzers.get(name or "default") or self.analyzers["default"]

    def tokens(self, text: str) -> list[str]:
        return self.pick(text).tokens(text) if text else []

    def tokens_of(self, texts: Sequence[str | None]) -> list[list[str]]:
        return [self.tokens(t) if t else [] for t in texts]


def routed_analyzer(spec: Mapping[str, Any], build: Callable[[Any], TextAnalyzer]) -> LanguageRoutedAnalyzer:
    """The analyzer of a ``language_identifier`` tokenizer spec; ``build`` makes each sub-analyzer."""
    opts = dict(spec)
    opts.pop("type", None)
    identifier = opts.pop("identifier", "whatlang")
    analyzers = opts.pop("analyzers", None)
    mapping = opts.pop("mapping", {})
    if opts:
        raise SchemaError(
            f"language_identifier tokenizer: unknown keys {sorted(opts)} (walvus knows identifier, "
            "analyzers, mapping)"
        )
    if not isinstance(analyzers, dict) or "default" not in analyzers:
        raise SchemaError(
            'language_identifier tokenizer needs "analyzers": an object of named analyzer params '
            'with a "default" one'
        )
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise SchemaError(
            f"language_identifier mapping must map language names to analyzer names, got {mapping!r}"
        )
    unknown = sorted(v for v in mapping.values() if v not in analyzers)
    if unknown:
        raise SchemaError(f"language_identifier mapping names analyzers that are not defined: {unknown}")
    detect = detector(identifier)
    built = {}
    for name, params in analyzers.items():
        try:
            built[name] = build(params)
        except SchemaError as exc:
            raise SchemaError(f"language_identifier analyzer {name!r}: {exc.message}") from None
    return LanguageRoutedAnalyzer(detect, built, dict(mapping))
