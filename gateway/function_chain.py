"""Function chains (pymilvus ``FunctionChain``) at the ``L2_RERANK`` stage of a plain search.

A chain is a list of ops over one query's hits, seen as columns: ``$id``, ``$score`` (the
search's score: similarity, or distance for L2), the collection fields it names, and the
columns its ``map`` ops create. Supported ops: ``map`` (with the expressions ``decay``,
``num_combine`` and ``round_decimal``), ``sort`` (``column``, ``desc``, ``tie_break_col``)
and ``limit`` (``limit``, ``offset``). Other stages, ops and expressions (``xgboost``,
``rerank_model``) are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus.grpc_gen import schema_pb2

from gateway.function_rerank import DECAY_FUNCTIONS, FunctionRerankError, decay_scores
from schemas.collection import CollectionSchema

ID, SCORE = "$id", "$score"
_COMBINE = ("sum", "multiply", "max", "min", "avg", "weighted")


def proto_value(v: schema_pb2.FunctionParamValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [proto_value(x) for x in v.array_value.values]
    if kind == "object_value":
        return {k: proto_value(x) for k, x in v.object_value.fields.items()}
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class Op:
    op: str
    params: dict[str, Any]
    output: str = ""
    expr: str = ""
    args: tuple[Any, ...] = ()  # ("col", name) or ("lit", value)
    expr_params: dict[str, Any] | None = None


@dataclass(frozen=True)
class FunctionChain:
    ops: tuple[Op, ...]

    @classmethod
    def parse(cls, chains: Sequence[schema_pb2.FunctionChain], schema: CollectionSchema) -> FunctionChain:
        if len(chains) != 1:
            raise FunctionRerankError(f"a search takes one function chain, got {len(chains)}")
        chain = chains[0]
        if chain.stage != schema_pb2.FunctionChainStageL2Rerank:
            raise FunctionRerankError(
                f"function chain stage {schema_pb2.FunctionChainStage.Name(chain.stage)} is not "
                "supported: walvus runs chains at the L2_RERANK stage"
            )
        ops: list[Op] = []
        known = {ID, SCORE} | {f.name for f in schema.fields}
        for p in chain.ops:
            params = {k: proto_value(v) for k, v in p.params.items()}
            if p.op == "map":
                ops.append(_parse_map(p, params, known))
                known.add(ops[-1].output)
            elif p.op == "sort":
                for c in (params.get("column"), params.get("tie_break_col")):
                    if c is not None and c not in known:
                        raise FunctionRerankError(f"function chain sorts by an unknown column {c!r}")
                if params.get("column") is None:
                    raise FunctionRerankError("function chain sort needs a column")
                ops.append(Op("sort", params))
            elif p.op == "limit":
                limit, offset = params.get("limit"), params.get("offset", 0)
                if not isinstance(limit, int) or limit < 1 or not isinstance(offset, int) or offset < 0:
                    raise FunctionRerankError(f"function chain limit {limit!r}/offset {offset!r} is invalid")
                ops.append(Op("limit", params))
            else:
                raise FunctionRerankError(f"function chain op {p.op!r} is not supported")
        return cls(tuple(ops))

    @property
    def input_fields(self) -> list[str]:
        made = {op.output for op in self.ops if op.op == "map"}
        names: list[str] = []
        for op in self.ops:
            cols = [a[1] for a in op.args if a[0] == "col"]
            cols += [op.params.get("column"), op.params.get("tie_break_col")]
            names += [c for c in cols if c and c not in (ID, SCORE) and c not in made and c not in names]
        return names

    def fuse(
        self,
        results: Sequence[tuple[Sequence[Any], np.ndarray, pa.Table]],
        metrics: Sequence[str],
        limit: int,
        offset: int,
    ) -> tuple[list[Any], np.ndarray, list[tuple[int, int]]]:
        """Run the chain on one request's hits; then keep ``[offset, offset + limit)``."""
        ((ids, dist, table),) = results
        ids = list(ids)
        cols: dict[str, np.ndarray] = {ID: np.asarray(ids), SCORE: np.asarray(dist, dtype=np.float64)}
        for name in self.input_fields:
            cols[name] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        rows = np.arange(len(ids))
        for op in self.ops:
            if op.op == "map":
                cols[op.output] = _evaluate(op, cols)
                continue
            if op.op == "sort":
                key = cols[op.params["column"]]
                key = -key if op.params.get("desc", True) else key
                tie = op.params.get("tie_break_col")
                order = np.lexsort((cols[tie], key)) if tie else np.argsort(key, kind="stable")
            else:
                start = op.params.get("offset", 0)
                order = np.arange(len(rows))[start : start + op.params["limit"]]
            rows = rows[order]
            cols = {k: v[order] for k, v in cols.items()}
        keep = slice(offset, offset + limit)
        return (
            [ids[i] for i in rows[keep]],
            cols[SCORE][keep].astype(np.float32),
            [(0, int(i)) for i in rows[keep]],
        )


def _parse_map(p: schema_pb2.FunctionChainOp, params: dict[str, Any], known: set[str]) -> Op:
    if len(p.outputs) != 1:
        raise FunctionRerankError("function chain map needs exactly one output column")
    name = p.expr.name
    args: list[tuple[str, Any]] = []
    for a in p.expr.args:
        if a.HasField("column"):
            if a.column.name not in known:
                raise FunctionRerankError(
                    f"function chain expression {name!r} reads an unknown column {a.column.name!r}"
                )
            args.append(("col", a.column.name))
        else:
            args.append(("lit", proto_value(a.literal)))
    ep = {k: proto_value(v) for k, v in p.expr.params.items()}
    if name == "decay":
        if len(args) != 1 or args[0][0] != "col" or ep.get("function") not in DECAY_FUNCTIONS:
            raise FunctionRerankError("decay needs one column and a function of gauss, exp or linear")
        scale, decay, offset = (
            float(ep.get("scale", 0)),
            float(ep.get("decay", 0.5)),
            float(ep.get("offset", 0)),
        )
        if scale <= 0 or not 0 < decay < 1 or offset < 0 or "origin" not in ep:
            raise FunctionRerankError("decay needs origin, scale > 0, offset >= 0 and decay in (0, 1)")
    elif name == "num_combine":
        mode, weights = ep.get("mode", "sum"), ep.get("weights")
        if mode not in _COMBINE or len(args) < 2 or any(k != "col" for k, _ in args):
            raise FunctionRerankError(
                f"num_combine needs two or more columns and a mode of {', '.join(_COMBINE)}"
            )
        if mode == "weighted" and (not isinstance(weights, list) or len(weights) != len(args)):
            raise FunctionRerankError("num_combine mode 'weighted' needs one weight per column")
    elif name == "round_decimal":
        if len(args) != 1 or not isinstance(ep.get("decimal"), int):
            raise FunctionRerankError("round_decimal needs one column and an integer decimal")
    else:
        raise FunctionRerankError(
            f"function chain expression {name!r} is not supported: use decay, num_combine or round_decimal"
        )
    return Op("map", params, output=p.outputs[0], expr=name, args=tuple(args), expr_params=ep)


def _evaluate(op: Op, cols: dict[str, np.ndarray]) -> np.ndarray:
    ep = op.expr_params or {}
    values = [cols[v] if k == "col" else np.float64(v) for k, v in op.args]
    if op.expr == "decay":
        return decay_scores(
            ep["function"],
            values[0],
            float(ep["origin"]),
            float(ep["scale"]),
            float(ep.get("offset", 0)),
            float(ep.get("decay", 0.5)),
        )
    if op.expr == "round_decimal":
        return np.round(values[0], int(ep["decimal"]))
    stack = np.vstack([np.asarray(v, dtype=np.float64) for v in values])
    mode = ep.get("mode", "sum")
    if mode == "weighted":
        return np.asarray(ep["weights"], dtype=np.float64) @ stack
    return {"sum": np.sum, "multiply": np.prod, "max": np.max, "min": np.min, "avg": np.mean}[mode](
        stack, axis=0
    )
