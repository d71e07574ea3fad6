"""The searcher's RPC payloads: requests as a JSON header plus raw array bytes, results as Arrow.

A request travels as one Arrow Flight ticket: ``[4-byte header length][JSON header][blobs]``,
where the header names each numpy array it carries (dtype, shape, byte offset) and the arrays
follow as raw bytes: dense query vectors, sparse queries (all indices, all values, offsets).
Results are Arrow tables: a search answer has one row per hit (``__q`` the query, ``__id``,
``__distance``, then the output fields); schema metadata says which shards the answer covers
and the metric (to merge by). Errors carry walvus's error class, code and message, so the
gateway raises the same error the searcher did.
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import fields
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import exceptions
from schemas.exceptions import WalvusError
from schemas.sparse import SparseQueries
from walvus.searcher import Consistency, ConsistencyLevel, Hits, QueryRequest, SearchRequest

Q, ID, DISTANCE = "__q", "__id", "__distance"
_LEN = struct.Struct("<I")


class _Blobs:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, a: np.ndarray) -> dict[str, Any]:
        a = np.ascontiguousarray(a)
        ref = {"dtype": a.dtype.str, "shape": list(a.shape), "at": self.size}
        self.parts.append(a.tobytes())
        self.size += a.nbytes
        return ref


def _array(ref: dict[str, Any], body: memoryview) -> np.ndarray:
    dt = np.dtype(ref["dtype"])
    n = int(np.prod(ref["shape"], dtype=np.int64))
    return np.frombuffer(body, dt, n, ref["at"]).reshape(ref["shape"])


def _pack(header: dict[str, Any], blobs: _Blobs) -> bytes:
    # the standard library's JSON: it writes what parameters may hold and orjson would not
    # (infinities, as a search iterator's bounds; integers past 64 bits)
    head = json.dumps(header, separators=(",", ":")).encode()
    return _LEN.pack(len(head)) + head + b"".join(blobs.parts)


def _unpack(data: bytes) -> tuple[dict[str, Any], memoryview]:
    (n,) = _LEN.unpack_from(data, 0)
    view = memoryview(data)
    return json.loads(bytes(view[4 : 4 + n])), view[4 + n :]


def _plain(req: Any, skip: set[str]) -> dict[str, Any]:
    out = {f.name: getattr(req, f.name) for f in fields(req) if f.name not in skip}
    c = req.consistency
    out["consistency"] = {
        "level": int(c.level),
        "guarantee_ts": c.guarantee_ts,
        "snapshot": c.snapshot,
        "wait_for": c.wait_for,
    }
    if req.shards is not None:
        out["shards"] = sorted(req.shards)
    return out


def _consistency(d: dict[str, Any]) -> Consistency:
    wait_for = tuple((int(s), int(o)) for s, o in d.get("wait_for", ()))
    return Consistency(ConsistencyLevel(d["level"]), int(d["guarantee_ts"]), bool(d["snapshot"]), wait_for)


def encode_search(req: SearchRequest) -> bytes:
    blobs = _Blobs()
    header = _plain(req, {"queries"})
    if isinstance(req.queries, SparseQueries):
        items = req.queries.items
        lengths = np.array([len(i) for i, _ in items], np.int64)
        header["sparse"] = {
            "lengths": blobs.add(lengths),
            "indices": blobs.add(
                np.concatenate([i for i, _ in items]).astype(np.int64) if items else np.zeros(0, np.int64)
            ),
            "values": blobs.add(
                np.concatenate([v for _, v in items]).astype(np.float32) if items else np.zeros(0, np.float32)
            ),
        }
    else:
        header["dense"] = blobs.add(np.asarray(req.queries))
    return _pack({"kind": "search", **header}, blobs)


def encode_query(req: QueryRequest) -> bytes:
    return _pack({"kind": "query", **_plain(req, set())}, _Blobs())


def decode_request(data: bytes) -> SearchRequest | QueryRequest:
    header, body = _unpack(data)
    kind = header.pop("kind")
    header["consistency"] = _consistency(header["consistency"])
    if header.get("shards") is not None:
        header["shards"] = frozenset(header["shards"])
    if kind == "query":
        return QueryRequest(**header)
    if "sparse" in header:
        sp = header.pop("sparse")
        lengths = _array(sp["lengths"], body)
        ends = np.cumsum(lengths)
        idx, val = _array(sp["indices"], body), _array(sp["values"], body)
        starts = ends - lengths
        queries: Any = SparseQueries([(idx[a:b], val[a:b]) for a, b in zip(starts, ends, strict=True)])
    else:
        queries = _array(header.pop("dense"), body)
    if header.get("bm25_stats") is not None:
        header["bm25_stats"] = [(int(n), float(t), list(df)) for n, t, df in header["bm25_stats"]]
    return SearchRequest(queries=queries, **header)


# results ---------------------------------------------------------------------------------------
def _with_meta(table: pa.Table, shards: frozenset[int], **extra: str) -> pa.Table:
    meta = {b"shards": ",".join(str(s) for s in sorted(shards)).encode()}
    meta.update({k.encode(): v.encode() for k, v in extra.items()})
    return table.replace_schema_metadata(meta)


def shards_of(table: pa.Table) -> frozenset[int]:
    raw = (table.schema.metadata or {}).get(b"shards", b"")
    return frozenset(int(s) for s in raw.decode().split(",") if s)


def metric_of(table: pa.Table) -> str:
    return (table.schema.metadata or {}).get(b"metric", b"").decode()


def encode_hits(hits: list[Hits], shards: frozenset[int], metric: str) -> pa.Table:
    """One table for every query's hits, grouped by query (``__q``), in one pass."""
    counts = [len(h.ids) for h in hits]
    q = np.repeat(np.arange(len(hits), dtype=np.int32), counts)
    ids = pa.array(list(itertools.chain.from_iterable(h.ids for h in hits)))
    distances = (
        np.concatenate([np.asarray(h.distances, np.float32) for h in hits])
        if hits
        else np.zeros(0, np.float32)
    )
    names, columns = [Q, ID, DISTANCE], [pa.array(q), ids, pa.array(distances, pa.float32())]
    if any(h.fields.num_columns for h in hits):  # a query without hits may come without its columns
        fields_table = pa.concat_tables([h.fields for h in hits], promote_options="default")
        names += fields_table.column_names
        columns += fields_table.columns
    return _with_meta(pa.Table.from_arrays(columns, names=names), shards, metric=metric, nq=str(len(hits)))


def decode_hits(table: pa.Table) -> list[Hits]:
    nq = int((table.schema.metadata or {}).get(b"nq", b"0"))
    if table.num_rows == 0:
        return [Hits([], np.zeros(0, np.float32), pa.table({})) for _ in range(nq)]
    q = table.column(Q).to_numpy()
    names = [n for n in table.column_names if n not in (Q, ID, DISTANCE)]
    if nq > 1 and np.any(q[1:] < q[:-1]):  # not grouped by query: ``encode_hits`` writes them so
        order = np.argsort(q, kind="stable")
        table, q = table.take(pa.array(order)), q[order]
    bounds = np.searchsorted(q, np.arange(nq + 1))
    out = []
    for qi in range(nq):
        rows = table.slice(bounds[qi], bounds[qi + 1] - bounds[qi])
        out.append(
            Hits(
                rows.column(ID).to_pylist(),
                rows.column(DISTANCE).to_numpy().astype(np.float32, copy=False),
                rows.select(names),
            )
        )
    return out


def encode_table(table: pa.Table, shards: frozenset[int]) -> pa.Table:
    return _with_meta(table, shards)


# errors ----------------------------------------------------------------------------------------
def encode_error(exc: Exception) -> str:
    if isinstance(exc, WalvusError):
        return json.dumps({"type": type(exc).__name__, "code": exc.code, "message": exc.message})
    return json.dumps({"type": type(exc).__name__, "code": 1, "message": str(exc) or type(exc).__name__})


def decode_error(text: str) -> Exception | None:
    """The error a searcher raised (None when ``text`` is not one of ours)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        d = json.loads(text[start : text.rfind("}") + 1])
    except ValueError:
        return None
    cls = getattr(exceptions, d.get("type", ""), None)
    exc: Exception
    if isinstance(cls, type) and issubclass(cls, WalvusError):
        exc = cls.__new__(cls)  # the same class (and gRPC status) without its constructor's arguments
        WalvusError.__init__(exc, d["message"])
    elif d.get("type") == "TimeoutError":
        exc = TimeoutError(d["message"])
    else:
        exc = WalvusError(d["message"])
    if isinstance(exc, WalvusError):
        exc.code = int(d.get("code", exc.code))
    return exc


__all__ = [
    "decode_error",
    "decode_hits",
    "decode_request",
    "encode_error",
    "encode_hits",
    "encode_query",
    "encode_search",
    "encode_table",
    "metric_of",
    "shards_of",
]
