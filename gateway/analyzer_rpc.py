"""RunAnalyzer: what an analyzer makes of some texts (tokens, and their BM25 term ids as hashes).

The analyzer is the one given by ``analyzer_params`` (Milvus's shapes, ``schemas/analyzer.py``),
or that of a collection's field (``collection_name`` + ``field_name``), or the standard one.
"""

from __future__ import annotations

from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from gateway.errors import OK, NotSupported
from schemas.analyzer import analyzer_for_field, build_analyzer, term_id
from schemas.exceptions import InvalidArgument


class AnalyzerRpcs:
    def __init__(self, walvus: Any) -> None:
        self.w = walvus

    def run_analyzer(self, req: milvus_pb2.RunAnalyzerRequest) -> milvus_pb2.RunAnalyzerResponse:
        if len(req.analyzer_names):
            raise NotSupported("analyzer_names (multi-language analyzers) are not supported by walvus")
        if req.with_detail:
            raise NotSupported(
                "run_analyzer with_detail (token offsets and positions) is not supported by walvus"
            )
        if req.collection_name and req.field_name:
            info = self.w.catalog.require(req.collection_name)
            field = info.schema.field(req.field_name)
            if field is None or not field.enable_analyzer:
                raise InvalidArgument(
                    f"field {req.field_name} of collection {info.name} is not a VARCHAR field with enable_analyzer"
                )
            analyzer = analyzer_for_field(field)
        else:
            analyzer = build_analyzer(req.analyzer_params or None)
        results = []
        for raw in req.placeholder:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgument("run_analyzer texts must be UTF-8") from exc
            tokens = analyzer.tokens(text)
            results.append(
                milvus_pb2.AnalyzerResult(
                    tokens=[
                        milvus_pb2.AnalyzerToken(token=t, hash=term_id(t) if req.with_hash else 0)
                        for t in tokens
                    ]
                )
            )
        return milvus_pb2.RunAnalyzerResponse(status=OK, results=results)
