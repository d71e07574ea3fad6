"""Word segmenters for text that spaces do not split: jieba (Chinese), lindera (Japanese) and ICU.

A segmenter turns a text into its words; the analyzer's filters then run over those words
(``schemas/analyzer.py``). Each engine is loaded on first use, once per process:

- ``jieba``: jieba's default dictionary, search mode (words and the shorter words inside them)
  or exact mode; whitespace-only pieces are dropped;
- ``lindera`` with ``dict_kind: ipadic``: the lindera morphological analyser with the IPADIC
  dictionary embedded in ``lindera-python-ipadic`` (the ``lindera`` package on PyPI ships no
  dictionary and would download one at build time, which an offline machine cannot do);
- ``icu``: ICU's word-break iteration (``icu4py``), every segment kept, spaces and punctuation
  included, as Milvus's icu tokenizer does (``removepunct`` drops them).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from schemas.exceptions import SchemaError

Segmenter = Callable[[str], list[str]]
LINDERA_DICTS = ("ipadic",)  # dictionaries this install embeds; ko-dic, cc-cedict, unidic are not
_lock = threading.Lock()


def _require(tokenizer: str, module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SchemaError(
            f"the {tokenizer} tokenizer needs a package that is not installed: pip install {package}"
        ) from exc


def jieba_segmenter(search: bool) -> Segmenter:
    jieba = _require("jieba", "jieba", "jieba")

    def segment(text: str) -> list[str]:
        with _lock:  # jieba's first use loads its dictionary, once
            if not jieba.dt.initialized:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
        pieces = jieba.cut_for_search(text) if search else jieba.cut(text)
        return [t for t in pieces if t.strip()]

    return segment


def lindera_segmenter(dict_kind: str) -> Segmenter:
    if dict_kind not in LINDERA_DICTS:
        raise SchemaError(
            f"lindera tokenizer: dict_kind {dict_kind!r} is not available in walvus; "
            f"use one of {', '.join(LINDERA_DICTS)}"
        )
    tokenizer = _lindera_tokenizer(dict_kind)
    return lambda text: [t.surface for t in tokenizer.tokenize(text) if t.surface.strip()]


@cache
def _lindera_tokenizer(dict_kind: str) -> Any:
    lindera = _require("lindera", "lindera", "lindera-python-ipadic==2.2.0")
    return lindera.Tokenizer(lindera.load_dictionary(f"embedded://{dict_kind}"), mode="normal")


def icu_segmenter() -> Segmenter:
    breakers = _require("icu", "icu4py.breakers", "icu4py==1.2.0")
    return lambda text: list(breakers.WordBreaker(text, "und"))
