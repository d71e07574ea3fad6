"""Benchmark datasets: seeded synthetic CLUSTERED vectors, cached as .npy under ``bench/.data/``.

Uniform random Gaussian vectors are a poor test of a graph index (every point is about as far
from every other, and HNSW recall collapses), so the base set is a Gaussian mixture instead:

- ``clusters`` centres drawn on the unit sphere, with uneven cluster sizes (Dirichlet weights);
- each cluster has its own anisotropic spread: a per-cluster scale times a per-dimension
  log-normal factor, so clusters are elongated along different axes and differ in tightness;
- every vector is L2-normalised, so COSINE, inner product and L2 rankings agree.

Queries come from the same mixture with a different seed (they are not base vectors), and
the ground truth is the exact top-k by inner product (faiss ``IndexFlatIP``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / ".data"
DESCRIPTION = (
    "synthetic clustered (Gaussian mixture, {clusters} anisotropic clusters, L2-normalised), seed {seed}"
)


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    base: np.ndarray  # (rows, dim) float32, unit norm
    queries: np.ndarray  # (nq, dim) float32, unit norm, not in base
    gt: np.ndarray  # (nq, k) int64 exact top-k ids (row numbers of base)
    extra: np.ndarray  # (n_extra, dim) float32 fresh vectors for insert/freshness trials

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    def summary(self) -> dict[str, object]:
        """What a benchmark's JSON records about the data it ran on."""
        return {
            "name": self.name,
            "description": self.description,
            "synthetic": True,
            "rows": len(self.base),
            "dim": self.dim,
            "queries": len(self.queries),
        }


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    return x


class _Mixture:
    def __init__(self, dim: int, clusters: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.centres = _normalise(rng.standard_normal((clusters, dim)))
        self.weights = rng.dirichlet(np.full(clusters, 2.0))
        # per-cluster tightness times per-dimension anisotropy: noise norm ~0.6-1.4 times a unit
        # centre's, so clusters overlap a little (faiss HNSW16/ef64 recall@10 about 0.98, as on SIFT)
        spread = rng.uniform(0.6, 1.4, clusters)[:, None] / np.sqrt(dim)
        self.scales = (spread * rng.lognormal(0.0, 0.8, (clusters, dim))).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator, chunk: int = 50_000) -> np.ndarray:
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            c = rng.choice(len(self.weights), size=m, p=self.weights)
            noise = rng.standard_normal((m, self.dim), dtype=np.float32)
            out[start : start + m] = self.centres[c] + noise * self.scales[c]
        return _normalise(out)


def fresh_vectors(
    dim: int = 128, *, clusters: int = 1_000, seed: int = 7, stream: int = 4
) -> Callable[[int], np.ndarray]:
    """``sample(n)``: new vectors from the mixture of ``clustered(dim=dim, clusters=clusters, seed=seed)``.

    Each ``stream`` number is its own seeded sequence, apart from the base, query and extra sets.
    """
    mix = _Mixture(dim, clusters, seed)
    rng = np.random.default_rng([seed, stream])
    return lambda n: mix.sample(n, rng)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _, ids = index.search(queries, k)
    return ids.astype(np.int64)


def clustered(
    rows: int = 100_000,
    dim: int = 128,
    *,
    nq: int = 1_000,
    k: int = 10,
    clusters: int = 1_000,
    seed: int = 7,
    n_extra: int = 1_000,
) -> Dataset:
    """The clustered dataset, built once and then read back from ``bench/.data/``."""
    name = f"clustered-v2-{rows}x{dim}-c{clusters}-s{seed}"
    folder = DATA_DIR / name
    files = {part: folder / f"{part}.npy" for part in ("base", "queries", f"gt{k}_q{nq}", f"extra{n_extra}")}
    if not all(p.exists() for p in files.values()):
        folder.mkdir(parents=True, exist_ok=True)
        mix = _Mixture(dim, clusters, seed)
        base = mix.sample(rows, np.random.default_rng([seed, 1]))
        queries = mix.sample(nq, np.random.default_rng([seed, 2]))
        extra = mix.sample(n_extra, np.random.default_rng([seed, 3]))
        gt = exact_topk(base, queries, k)
        for part, arr in zip(files, (base, queries, gt, extra), strict=True):
            tmp = files[part].with_suffix(".tmp.npy")
            np.save(tmp, arr)
            tmp.replace(files[part])
    base, queries, gt, extra = (np.load(p) for p in files.values())
    return Dataset(
        name=name,
        description=DESCRIPTION.format(clusters=clusters, seed=seed),
        base=base,
        queries=queries,
        gt=gt,
        extra=extra,
    )


def recall_at_k(found: np.ndarray | list, gt: np.ndarray, k: int = 10) -> float:
    """Mean |found ∩ truth| / k over queries; ``found`` rows may be shorter than k (missing hits)."""
    hits = 0
    for row, truth in zip(found, gt, strict=True):
        hits += len(set(int(i) for i in list(row)[:k]) & set(int(t) for t in truth[:k]))
    return hits / (k * len(gt))
