"""The search surface, part 1: vector and scalar types, range search, grouping, hybrid search and
query extras, each checked against results computed here (pymilvus -> real walvus processes).

Vectors are chosen so that distances are exactly representable (small integers, +-1 patterns,
dyadic Jaccard values), so range boundaries can be tested with points lying exactly on them.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusException, RRFRanker, WeightedRanker

from tests.integration.search_support import running, stats, wait_indexed
from tests.procs import LAYOUTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=LAYOUTS)
def live(request, kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("search-types"), request.param) as (dep, client):
        yield dep, client


def _strong(**kw):
    return {"consistency_level": "Strong", **kw}


# ---------------------------------------------------------------------------------- references


def _l2(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    return ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=2)


def _ip(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return q.astype(np.float64) @ x.astype(np.float64).T


def _cos(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return qn.astype(np.float64) @ xn.astype(np.float64).T


def _float_dist(metric: str, q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return {"L2": _l2, "IP": _ip, "COSINE": _cos}[metric](q, x)


def _bits(codes: np.ndarray) -> np.ndarray:
    return np.unpackbits(codes, axis=-1).astype(np.int64)


def _hamming(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (_bits(q)[:, None, :] ^ _bits(x)[None, :, :]).sum(axis=2).astype(np.float32)


def _jaccard(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    a, b = _bits(q)[:, None, :], _bits(x)[None, :, :]
    inter = (a & b).sum(axis=2)
    union = (a | b).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, 1.0 - inter / union, 0.0).astype(np.float32)


def _similarity(metric: str) -> bool:
    return metric in ("IP", "COSINE")


def _in_range(d: np.ndarray, metric: str, radius: float, range_filter: float | None) -> np.ndarray:
    """Milvus's rules: L2/HAMMING/JACCARD keep rf <= d < radius, IP/COSINE keep radius < d <= rf."""
    if _similarity(metric):
        keep = d > radius
        return keep & (d <= range_filter) if range_filter is not None else keep
    keep = d < radius
    return keep & (d >= range_filter) if range_filter is not None else keep


def _assert_topk(hits: list[dict], ref: np.ndarray, k: int, metric: str, rel: float = 1e-5) -> None:
    """Hits are the exact top-k of one query whose reference distances (one per row id) are ``ref``."""
    sim = _similarity(metric)
    order = np.argsort(-ref if sim else ref, kind="stable")[:k]
    assert len(hits) == min(k, len(ref))
    got = np.array([h["distance"] for h in hits])
    np.testing.assert_allclose(got, ref[order], rtol=rel, atol=rel)
    for h in hits:  # each id at its own distance; ties may come in any order
        assert h["distance"] == pytest.approx(ref[h["id"]], rel=rel, abs=rel)
    assert len({h["id"] for h in hits}) == len(hits)


# ---------------------------------------------------------------------------------- 1. types


def _bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 values that bfloat16 holds exactly (the high half of the float32)."""
    return (x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


def _bf16_bytes(x: np.ndarray) -> bytes:
    return (x.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def test_float16_and_bfloat16_vectors(live):
    _, client = live
    dim, n = 8, 300
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("f16", DataType.FLOAT16_VECTOR, dim=dim)
    schema.add_field("bf16", DataType.BFLOAT16_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    idx.add_index("f16", index_type="FLAT", metric_type="L2")
    idx.add_index("bf16", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
    client.create_collection("half", schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(10)
    f16 = rng.standard_normal((n, dim)).astype(np.float16)
    bf = _bf16_round(rng.standard_normal((n, dim)))
    client.insert("half", [{"id": i, "f16": f16[i], "bf16": _bf16_bytes(bf[i])} for i in range(n)])
    q = rng.standard_normal((3, dim)).astype(np.float32)
    q16 = q.astype(np.float16)

    def check() -> None:
        ref = _l2(q, f16.astype(np.float32))
        res = client.search(
            "half", q.tolist(), anns_field="f16", limit=10, search_params={"metric_type": "L2"}
        )
        for qi in range(len(q)):
            _assert_topk(res[qi], ref[qi], 10, "L2")
        # float16 query vectors travel as a Float16Vector placeholder
        ref16 = _l2(q16.astype(np.float32), f16.astype(np.float32))
        res = client.search("half", [q16[0]], anns_field="f16", limit=10, search_params={"metric_type": "L2"})
        _assert_topk(res[0], ref16[0], 10, "L2")
        ref = _ip(q, bf)
        res = client.search(
            "half",
            q.tolist(),
            anns_field="bf16",
            limit=10,
            search_params={"metric_type": "IP", "params": {"ef": 512}},
        )
        for qi in range(len(q)):
            _assert_topk(res[qi], ref[qi], 10, "IP")
        got = client.query("half", filter="id in [3, 200]", output_fields=["f16", "bf16"])
        by_id = {r["id"]: r for r in got}
        assert sorted(by_id) == [3, 200]
        for i in (3, 200):
            assert _as_bytes(by_id[i]["f16"]) == f16[i].tobytes()
            assert _as_bytes(by_id[i]["bf16"]) == _bf16_bytes(bf[i])

    check()  # growing rows: brute force
    client.flush("half")
    wait_indexed(client, "half", 2)
    check()  # sealed segments: FLAT and HNSW indexes


def _as_bytes(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return b"".join(v)
    return np.asarray(v).tobytes()


def test_binary_vectors_hamming_and_jaccard_on_flat_and_ivf(live):
    _, client = live
    dim, n = 32, 400
    fields = {
        "h_flat": ("BIN_FLAT", "HAMMING"),
        "j_flat": ("BIN_FLAT", "JACCARD"),
        "h_ivf": ("BIN_IVF_FLAT", "HAMMING"),
        "j_ivf": ("BIN_IVF_FLAT", "JACCARD"),
    }
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    for name in fields:
        schema.add_field(name, DataType.BINARY_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    for name, (itype, metric) in fields.items():
        idx.add_index(
            name, index_type=itype, metric_type=metric, params={"nlist": 4} if "IVF" in itype else {}
        )
    client.create_collection("bins", schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (n, dim // 8), dtype=np.uint8)
    client.insert("bins", [{"id": i, **{f: codes[i].tobytes() for f in fields}} for i in range(n)])
    q = rng.integers(0, 256, (2, dim // 8), dtype=np.uint8)

    def check() -> None:
        for name, (_, metric) in fields.items():
            ref = (_hamming if metric == "HAMMING" else _jaccard)(q, codes)
            res = client.search(
                "bins",
                [row.tobytes() for row in q],
                anns_field=name,
                limit=15,
                search_params={"metric_type": metric, "params": {"nprobe": 4}},
            )
            for qi in range(len(q)):
                _assert_topk(res[qi], ref[qi].astype(np.float64), 15, metric, rel=0)

    check()
    client.flush("bins")
    wait_indexed(client, "bins", len(fields))
    check()


def test_json_array_nullable_default_and_dynamic_fields(live):
    _, client = live
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    schema.add_field("names", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16)
    schema.add_field("note", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field("score", DataType.INT64, nullable=True)
    schema.add_field("level", DataType.INT32, default_value=7)
    schema.add_field("label", DataType.VARCHAR, max_length=16, default_value="none")
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection("typed", schema=schema, index_params=idx, consistency_level="Strong")
    n = 60
    rows, expect = [], {}
    for i in range(n):
        row = {
            "id": i,
            "vec": [float(i), 0.0, 0.0, 1.0],
            "meta": {"a": {"b": i % 5}, "tags": ["x", "y"] if i % 2 else ["z"], "n": i},
            "tags": list(range(i % 4)),
            "names": [f"n{i % 3}"],
            "note": None if i % 3 == 0 else f"note{i}",
            "score": None if i % 4 == 0 else i,
            "color": ["red", "green", "blue"][i % 3],  # dynamic
            "extra": {"k": i},  # dynamic
        }
        if i % 2:  # even rows leave level and label out: the defaults fill them
            row["level"] = i
            row["label"] = f"l{i}"
        rows.append(row)
        expect[i] = {
            **row,
            "level": row.get("level", 7),
            "label": row.get("label", "none"),
        }
    rows[2]["level"] = None  # an explicit null takes the default too
    client.insert("typed", rows)
    fields = {f["name"]: f for f in client.describe_collection("typed")["fields"]}
    assert fields["tags"]["element_type"] == DataType.INT64 and fields["tags"]["params"]["max_capacity"] == 8
    assert (
        fields["names"]["element_type"] == DataType.VARCHAR and fields["names"]["params"]["max_capacity"] == 4
    )
    assert fields["note"]["nullable"] is True and fields["level"]["default_value"].int_data == 7
    too_long = {**rows[1], "id": 1000, "tags": list(range(9))}
    with pytest.raises(MilvusException, match="capacity"):
        client.insert("typed", [too_long])
    assert client.query("typed", filter="id == 1000", output_fields=["id"]) == []

    def ids(flt: str, **kw) -> list[int]:
        return sorted(r["id"] for r in client.query("typed", filter=flt, output_fields=["id"], **kw))

    def where(pred) -> list[int]:
        return sorted(i for i, r in expect.items() if pred(r))

    def check() -> None:
        assert ids('meta["a"]["b"] > 1') == where(lambda r: r["meta"]["a"]["b"] > 1)
        assert ids('meta["n"] >= 50 and meta["a"]["b"] == 0') == where(
            lambda r: r["id"] >= 50 and r["id"] % 5 == 0
        )
        assert ids('json_contains(meta["tags"], "x")') == where(lambda r: "x" in r["meta"]["tags"])
        assert ids('json_contains_all(meta["tags"], ["x", "y"])') == where(lambda r: r["id"] % 2 == 1)
        assert ids('json_contains_any(meta["tags"], ["z", "q"])') == where(lambda r: r["id"] % 2 == 0)
        assert ids("array_contains(tags, 2)") == where(lambda r: 2 in r["tags"])
        assert ids("array_contains_all(tags, [0, 1])") == where(lambda r: {0, 1} <= set(r["tags"]))
        assert ids("array_contains_any(tags, [2, 5])") == where(lambda r: 2 in r["tags"])
        assert ids("array_length(tags) == 2") == where(lambda r: len(r["tags"]) == 2)
        assert ids('array_contains(names, "n1")') == where(lambda r: r["names"] == ["n1"])
        assert ids("tags[0] == 0") == where(lambda r: len(r["tags"]) > 0)
        assert ids("note is null") == where(lambda r: r["note"] is None)
        assert ids("note IS NOT NULL and score is null") == where(
            lambda r: r["note"] is not None and r["score"] is None
        )
        assert ids("score > 50") == where(lambda r: r["score"] is not None and r["score"] > 50)
        assert ids("level == 7") == where(lambda r: r["level"] == 7)
        assert ids('label == "none"') == where(lambda r: r["id"] % 2 == 0)
        assert ids('color == "red"') == where(lambda r: r["color"] == "red")
        assert ids('$meta["color"] == "blue"') == where(lambda r: r["color"] == "blue")
        assert ids('extra["k"] > 30 and color in ["red", "green"]') == where(
            lambda r: r["id"] > 30 and r["color"] in ("red", "green")
        )
        out = client.query(
            "typed",
            filter="id in [0, 5, 6, 7]",
            output_fields=["meta", "tags", "names", "note", "score", "level", "label", "color", "extra"],
        )
        assert len(out) == 4
        for r in out:
            e = expect[r["id"]]
            for key in ("meta", "tags", "names", "note", "score", "level", "label", "color", "extra"):
                assert r[key] == e[key], (r["id"], key, r[key], e[key])
        # all dynamic keys through $meta / *
        star = client.query("typed", filter="id == 4", output_fields=["*"])[0]
        assert star["color"] == "green" and star["extra"] == {"k": 4} and star["level"] == 7
        # the same filters and outputs on a search
        hits = client.search(
            "typed",
            [[0.0, 0.0, 0.0, 1.0]],
            limit=5,
            filter='json_contains(meta["tags"], "x") and note is not null',
            output_fields=["note", "color", "meta", "tags"],
        )[0]
        want = [i for i in range(n) if i % 2 and i % 3][:5]  # nearest = smallest i
        assert [h["id"] for h in hits] == want
        for h in hits:
            e = expect[h["id"]]
            assert h["entity"]["note"] == e["note"] and h["entity"]["color"] == e["color"]
            assert h["entity"]["meta"] == e["meta"] and h["entity"]["tags"] == e["tags"]
        nulls = client.search(
            "typed", [[0.0, 0.0, 0.0, 1.0]], limit=3, filter="note is null", output_fields=["note", "score"]
        )[0]
        assert [h["id"] for h in nulls] == [0, 3, 6]
        assert all(h["entity"]["note"] is None for h in nulls)
        assert [h["entity"]["score"] for h in nulls] == [None, 3, 6]

    check()
    client.flush("typed")
    check()


# ---------------------------------------------------------------------------------- 2. range search

_FLOAT_INDEXES = {
    "FLAT": {},
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 4},
}


def _sign_vectors() -> np.ndarray:
    """+-1 patterns times 1, 2 and 3: L2 and IP are small integers, COSINE is in {-1, -.5, 0, .5, 1}."""
    pats = np.array(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=np.float32)
    return np.concatenate([pats * s for s in (1.0, 2.0, 3.0)])


def _bounds(d: np.ndarray, metric: str) -> list[tuple[float, float | None]]:
    """(radius, range_filter) pairs lying exactly on attained distances, plus a radius-only one."""
    vals = np.unique(d)
    if _similarity(metric):
        return [(float(vals[1]), float(vals[-2])), (float(vals[0]), float(vals[-1])), (float(vals[2]), None)]
    return [(float(vals[-2]), float(vals[1])), (float(vals[-1]), float(vals[0])), (float(vals[-3]), None)]


def _check_range(client, name, field, metric, q, ref, params=None, limit=500) -> None:
    for radius, rf in _bounds(ref[0], metric):
        sp = {"radius": radius, **({"range_filter": rf} if rf is not None else {}), **(params or {})}
        res = client.search(
            name,
            [row.tolist() if row.dtype != np.uint8 else row.tobytes() for row in q],
            anns_field=field,
            limit=limit,
            search_params={"metric_type": metric, "params": sp},
        )
        for qi in range(len(q)):
            keep = _in_range(ref[qi], metric, radius, rf)
            assert keep.sum() > 0
            # the data put points exactly on both boundaries of query 0
            if qi == 0:
                assert (ref[qi] == radius).any() and (rf is None or (ref[qi] == rf).any())
            want = {int(i): float(ref[qi][i]) for i in np.flatnonzero(keep)}
            got = {h["id"]: h["distance"] for h in res[qi]}
            assert set(got) == set(want), (field, metric, radius, rf, sorted(set(got) ^ set(want))[:10])
            for i, dist in got.items():
                assert dist == pytest.approx(want[i], abs=1e-6)
            ds = [h["distance"] for h in res[qi]]
            assert ds == sorted(ds, reverse=_similarity(metric))


def test_range_search_float_metrics_at_both_boundaries(live):
    _, client = live
    base = _sign_vectors()
    x = np.concatenate([base, base])  # every vector twice: ties across ids
    n = len(x)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    idx = client.prepare_index_params()
    names = []
    for metric in ("L2", "IP", "COSINE"):
        for itype, params in _FLOAT_INDEXES.items():
            name = f"{metric}_{itype}".lower()
            names.append((name, metric))
            schema.add_field(name, DataType.FLOAT_VECTOR, dim=4)
            idx.add_index(name, index_type=itype, metric_type=metric, params=params)
    client.create_collection("ranges", schema=schema, index_params=idx, consistency_level="Strong")
    client.insert("ranges", [{"id": i, **{f: x[i].tolist() for f, _ in names}} for i in range(n)])
    q = np.array([[1, 1, 1, 1], [1, -1, 1, -1]], dtype=np.float32)
    params = {"nprobe": 4, "ef": 512}

    def check() -> None:
        for name, metric in names:
            _check_range(client, "ranges", name, metric, q, _float_dist(metric, q, x), params)

    check()  # growing
    client.flush("ranges")
    wait_indexed(client, "ranges", len(names))
    check()  # sealed, FLAT / HNSW / IVF_FLAT indexes


def test_range_search_binary_metrics_at_both_boundaries(live):
    _, client = live
    rng = np.random.default_rng(12)
    n, nbytes = 300, 2
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    codes[0] = 0  # the all-zero vector: JACCARD 1 to anything else (0 to itself)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("h", DataType.BINARY_VECTOR, dim=nbytes * 8)
    schema.add_field("j", DataType.BINARY_VECTOR, dim=nbytes * 8)
    idx = client.prepare_index_params()
    idx.add_index("h", index_type="BIN_FLAT", metric_type="HAMMING")
    idx.add_index("j", index_type="BIN_FLAT", metric_type="JACCARD")
    client.create_collection("branges", schema=schema, index_params=idx, consistency_level="Strong")
    client.insert("branges", [{"id": i, "h": codes[i].tobytes(), "j": codes[i].tobytes()} for i in range(n)])
    q = np.array([[0b11110000, 0b00001111], [0b10101010, 0b01010101]], dtype=np.uint8)

    def check() -> None:
        _check_range(client, "branges", "h", "HAMMING", q, _hamming(q, codes))
        _check_range(client, "branges", "j", "JACCARD", q, _jaccard(q, codes))

    check()
    client.flush("branges")
    wait_indexed(client, "branges", 2)
    check()


# ---------------------------------------------------------------------------------- 4. grouping, hybrid


def _group_reference(d: np.ndarray, groups: list[str], limit: int, size: int, sim: bool) -> list[list[int]]:
    order = np.argsort(-d if sim else d, kind="stable")
    taken: dict[str, list[int]] = {}
    for i in order.tolist():
        g = groups[i]
        if g not in taken and len(taken) >= limit:
            continue
        if len(taken.setdefault(g, [])) < size:
            taken[g].append(i)
    return list(taken.values())


def test_grouping_search(live):
    _, client = live
    dim, n = 8, 400
    rng = np.random.default_rng(13)
    x = rng.random((n, dim), dtype=np.float32)
    colors = [f"c{int(c)}" for c in rng.integers(0, 12, n)]
    colors[:3] = ["rare", "rare", "solo"]  # groups with fewer rows than group_size
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("color", DataType.VARCHAR, max_length=8)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection("groups", schema=schema, index_params=idx, consistency_level="Strong")
    client.insert("groups", [{"id": i, "vec": x[i].tolist(), "color": colors[i]} for i in range(n)])
    q = np.stack([x[0] + 0.01, rng.random(dim, dtype=np.float32)])
    ref_d = _l2(q, x)

    def check() -> None:
        for limit, size, strict in ((4, 3, True), (5, 2, False), (3, 1, True), (20, 50, True)):
            res = client.search(
                "groups",
                q.tolist(),
                limit=limit,
                group_by_field="color",
                group_size=size,
                strict_group_size=strict,
                output_fields=["color"],
            )
            for qi in range(len(q)):
                want = _group_reference(ref_d[qi], colors, limit, size, False)
                got_groups: dict[str, list[int]] = {}
                for h in res[qi]:
                    got_groups.setdefault(h["entity"]["color"], []).append(h["id"])
                    assert h["distance"] == pytest.approx(ref_d[qi][h["id"]], rel=1e-5, abs=1e-5)
                # groups come in order of their best hit, each group's hits together, best first
                assert [colors[g[0]] for g in want] == list(got_groups)
                flat = [h["id"] for h in res[qi]]
                assert flat == [i for g in got_groups.values() for i in g]
                for g in want:
                    got = got_groups[colors[g[0]]]
                    if strict:
                        assert got == g
                    else:  # at most group_size, the group's true best first
                        assert 1 <= len(got) <= size and got == g[: len(got)]
        # "rare" has 2 rows, "solo" 1: a strict group of 3 still holds only what exists
        res = client.search(
            "groups",
            [x[0].tolist()],
            limit=12,
            group_by_field="color",
            group_size=3,
            strict_group_size=True,
            output_fields=["color"],
            filter='color in ["rare", "solo", "c1"]',
        )[0]
        got = Counter(h["entity"]["color"] for h in res)
        assert got["rare"] == 2 and got["solo"] == 1 and got["c1"] == min(3, colors.count("c1"))

    check()
    client.flush("groups")
    wait_indexed(client, "groups", 1)
    check()


def _assert_fused(hits: list[dict], ref: dict[int, float], limit: int) -> None:
    want = sorted(ref.items(), key=lambda kv: -kv[1])[:limit]
    assert len(hits) == len(want)
    got_scores = [h["distance"] for h in hits]
    np.testing.assert_allclose(got_scores, [s for _, s in want], rtol=1e-5, atol=1e-6)
    for h in hits:
        assert h["distance"] == pytest.approx(ref[h["id"]], rel=1e-5, abs=1e-6)
    cut = want[-1][1]
    must = {i for i, s in want if s > cut + 1e-6}
    assert must <= {h["id"] for h in hits}


def test_hybrid_search_rrf_and_weighted(live):
    _, client = live
    dim, n = 8, 300
    rng = np.random.default_rng(14)
    a = rng.standard_normal((n, dim)).astype(np.float32)
    b = rng.standard_normal((n, dim)).astype(np.float32)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("a", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("b", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("a", index_type="FLAT", metric_type="L2")
    idx.add_index("b", index_type="FLAT", metric_type="IP")
    client.create_collection("hybrid", schema=schema, index_params=idx, consistency_level="Strong")
    client.insert("hybrid", [{"id": i, "a": a[i].tolist(), "b": b[i].tolist(), "n": i} for i in range(n)])
    qa = rng.standard_normal((2, dim)).astype(np.float32)
    qb = rng.standard_normal((2, dim)).astype(np.float32)
    da, db = _l2(qa, a), _ip(qb, b)
    k_each, limit = 30, 10

    def reqs(flt: str | None = None):
        return [
            AnnSearchRequest(qa.tolist(), "a", {"metric_type": "L2"}, k_each, expr=flt),
            AnnSearchRequest(qb.tolist(), "b", {"metric_type": "IP"}, k_each, expr=flt),
        ]

    def tops(qi: int, allowed: np.ndarray) -> tuple[list[int], list[int]]:
        ia = [int(i) for i in np.argsort(da[qi], kind="stable") if allowed[i]][:k_each]
        ib = [int(i) for i in np.argsort(-db[qi], kind="stable") if allowed[i]][:k_each]
        return ia, ib

    def check() -> None:
        for flt, allowed in ((None, np.ones(n, bool)), ("n % 2 == 0", np.arange(n) % 2 == 0)):
            res = client.hybrid_search("hybrid", reqs(flt), RRFRanker(60), limit=limit, output_fields=["n"])
            for qi in range(2):
                ia, ib = tops(qi, allowed)
                ref: dict[int, float] = {}
                for lst in (ia, ib):
                    for rank, i in enumerate(lst, start=1):
                        ref[i] = ref.get(i, 0.0) + 1.0 / (60 + rank)
                _assert_fused(res[qi], ref, limit)
                assert all(h["entity"]["n"] == h["id"] for h in res[qi])
            res = client.hybrid_search("hybrid", reqs(flt), WeightedRanker(0.7, 0.3), limit=limit)
            for qi in range(2):
                ia, ib = tops(qi, allowed)
                ref = {}
                for i in ia:
                    ref[i] = ref.get(i, 0.0) + 0.7 * (1.0 - 2.0 * math.atan(da[qi][i]) / math.pi)
                for i in ib:
                    ref[i] = ref.get(i, 0.0) + 0.3 * (0.5 + math.atan(db[qi][i]) / math.pi)
                _assert_fused(res[qi], ref, limit)
            res = client.hybrid_search(
                "hybrid", reqs(flt), WeightedRanker(0.5, 2.0, norm_score=False), limit=limit
            )
            for qi in range(2):  # L2 beside IP without normalisation: L2 turned larger-is-better (Milvus 2.6)
                ia, ib = tops(qi, allowed)
                ref = {}
                for i in ia:
                    ref[i] = ref.get(i, 0.0) + 0.5 * (1.0 - 2.0 * math.atan(da[qi][i]) / math.pi)
                for i in ib:
                    ref[i] = ref.get(i, 0.0) + 2.0 * db[qi][i]
                _assert_fused(res[qi], ref, limit)

    check()
    client.flush("hybrid")
    wait_indexed(client, "hybrid", 2)
    check()


# ---------------------------------------------------------------------------------- 5. query extras


def test_query_and_search_extras(live):
    _, client = live
    dim, n_sealed, n_growing = 8, 200, 50
    rng = np.random.default_rng(15)
    x = rng.random((n_sealed + n_growing, dim), dtype=np.float32)
    colors = [["red", "green", "blue", "black"][int(c)] for c in rng.integers(0, 4, len(x))]
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("color", DataType.VARCHAR, max_length=8)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection("extras", schema=schema, index_params=idx, consistency_level="Strong")

    def rows(lo: int, hi: int) -> list[dict]:
        return [{"id": i, "vec": x[i].tolist(), "color": colors[i], "n": i % 7} for i in range(lo, hi)]

    client.insert("extras", rows(0, n_sealed))
    client.flush("extras")
    wait_indexed(client, "extras", 1)
    client.insert("extras", rows(n_sealed, n_sealed + n_growing))  # stays growing (no idle seal here)
    total = n_sealed + n_growing
    assert client.query("extras", filter="", output_fields=["count(*)"])[0]["count(*)"] == total  # caught up
    assert stats(client, "extras")["growing_rows"] == n_growing
    q = rng.random((2, dim), dtype=np.float32)
    ref = _l2(q, x)

    # query: limit / offset pages are disjoint and together cover the matches
    matches = sorted(i for i in range(total) if i % 7 == 3)
    pages = [
        [r["id"] for r in client.query("extras", filter="n == 3", output_fields=["id"], limit=10, offset=off)]
        for off in range(0, len(matches) + 10, 10)
    ]
    seen = [i for p in pages for i in p]
    assert all(len(p) <= 10 for p in pages) and sorted(seen) == matches and len(seen) == len(set(seen))
    assert len(client.query("extras", filter="", output_fields=["id"], limit=7, offset=240)) == 7
    assert len(client.query("extras", filter="", output_fields=["id"], limit=7, offset=245)) == 5

    # search: offset, round_decimal
    full = client.search("extras", q.tolist(), limit=15, output_fields=["n"])
    for qi in range(2):
        _assert_topk(full[qi], ref[qi], 15, "L2")
    part = client.search("extras", q.tolist(), limit=5, offset=10)
    assert [[h["id"] for h in r] for r in part] == [[h["id"] for h in r[10:15]] for r in full]
    rounded = client.search("extras", q.tolist(), limit=5, round_decimal=2)
    for qi in range(2):
        for h in rounded[qi]:
            assert h["distance"] == pytest.approx(round(float(ref[qi][h["id"]]), 2), abs=1e-6)
            assert abs(h["distance"] * 100 - round(h["distance"] * 100)) < 1e-3

    # ignore_growing: rows not yet flushed are skipped
    hits = client.search("extras", q.tolist(), limit=total, search_params={"ignore_growing": True})
    for qi in range(2):
        assert {h["id"] for h in hits[qi]} == set(range(n_sealed))
    hits = client.search("extras", q.tolist(), limit=total, ignore_growing=True)
    assert {h["id"] for h in hits[0]} == set(range(n_sealed))
    got = client.query("extras", filter="id >= 0", output_fields=["id"], limit=1000, ignore_growing=True)
    assert sorted(r["id"] for r in got) == list(range(n_sealed))
    got = client.query("extras", filter="id >= 0", output_fields=["id"], limit=1000)
    assert sorted(r["id"] for r in got) == list(range(total))

    # search by primary keys: the stored vectors of those rows are the queries
    by_ids = client.search("extras", ids=[5, n_sealed + 7], limit=6)
    for qi, key in enumerate([5, n_sealed + 7]):
        assert by_ids[qi][0]["id"] == key and by_ids[qi][0]["distance"] == pytest.approx(0.0, abs=1e-6)
        _assert_topk(by_ids[qi], _l2(x[key : key + 1], x)[0], 6, "L2")

    # distinct values (with counts) of a scalar field: group_by_fields on a query
    got = client.query("extras", filter="", output_fields=["color", "count(*)"], group_by_fields=["color"])
    assert {r["color"]: r["count(*)"] for r in got} == dict(Counter(colors))
    got = client.query(
        "extras", filter="n < 2", output_fields=["color", "n", "count(*)"], group_by_fields=["color", "n"]
    )
    want = Counter((colors[i], i % 7) for i in range(total) if i % 7 < 2)
    assert {(r["color"], r["n"]): r["count(*)"] for r in got} == dict(want)
    got = client.query("extras", filter="", output_fields=["color"], group_by_fields=["color"])
    assert sorted(r["color"] for r in got) == sorted(set(colors))
    count = client.query("extras", filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert count == total
