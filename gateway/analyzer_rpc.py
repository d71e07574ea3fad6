"""RunAnalyzer: what an analyzer makes of some texts (tokens, and their BM25 term ids as hashes).

The analyzer is the one given by ``analyzer_params`` (Milvus's shapes, ``schemas/analyzer.py``),
or that of a collection's field (``collection_name`` + ``field_name``), or the standard one. On a
field with multi-language analyzers, ``analyzer_names`` picks them: one name for every text, or
one name per text (none: ``default``).
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2

from gateway.errors import OK, NotSupported
from schemas.analyzer import TextAnalyzer, analyzer_for_field, build_analyzer, term_id
from schemas.exceptions import InvalidArgument
from schemas.multi_analyzer import multi_analyzer_for_field
from walvus.write_api import WriteApi


class AnalyzerRpcs:
    def __init__(self, walvus: WriteApi) -> None:
        self.w = walvus

    def run_analyzer(self, req: milvus_pb2.RunAnalyzerRequest) -> milvus_pb2.RunAnalyzerResponse:
        if req.with_detail:
            raise NotSupported(
                "run_analyzer with_detail (token offsets and positions) is not supported by walvus"
            )
        texts = []
        for raw in req.placeholder:
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidArgument("run_analyzer texts must be UTF-8") from exc
        analyzers = self._analyzers(req, len(texts))
        results = []
        for text, analyzer in zip(texts, analyzers, strict=True):
            results.append(
                milvus_pb2.AnalyzerResult(
                    tokens=[
                        milvus_pb2.AnalyzerToken(token=t, hash=term_id(t) if req.with_hash else 0)
                        for t in analyzer.tokens(text)
                    ]
                )
            )
        return milvus_pb2.RunAnalyzerResponse(status=OK, results=results)

    def _analyzers(self, req: milvus_pb2.RunAnalyzerRequest, n: int) -> list[TextAnalyzer]:
        names = list(req.analyzer_names)
        if not (req.collection_name and req.field_name):
            if names:
                raise InvalidArgument(
                    "analyzer_names picks analyzers of a collection field with multi_analyzer_params: "
                    "give collection_name and field_name"
                )
            return [build_analyzer(req.analyzer_params or None)] * n
        info = self.w.catalog.require(req.collection_name)
        field = info.schema.field(req.field_name)
        if field is None or not field.enable_analyzer:
            raise InvalidArgument(
                f"field {req.field_name} of collection {info.name} is not a VARCHAR field with enable_analyzer"
            )
        if not field.multi_analyzer_params:
            if names:
                raise InvalidArgument(
                    f"analyzer_names: field {field.name} of collection {info.name} has one analyzer, "
                    "not multi_analyzer_params"
                )
            return [analyzer_for_field(field)] * n
        multi = multi_analyzer_for_field(field)
        if len(names) > 1 and len(names) != n:
            raise InvalidArgument(
                f"analyzer_names: give one name for all texts or one per text; got {len(names)} names "
                f"for {n} texts"
            )
        return [multi.pick(names[0] if len(names) == 1 else names[i] if names else None) for i in range(n)]
