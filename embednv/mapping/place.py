"""Place new points on a finished map without moving the points already on it.

Two methods, one contract: `place(ref_x, ref_y, new_x) -> new_y`, where `ref_x` (m, 50) and
`ref_y` (m, 2) are the PCA coordinates and map positions of the points on the map, and `new_x`
(q, 50) the PCA coordinates (same basis) of the points to add. `ref_y` is read, never written:
every old coordinate stays bit-identical.

    opentsne  openTSNE's `TSNEEmbedding.transform` (Poličar et al., "openTSNE", JSS 2024): each new
              point starts at the median map position of its 25 nearest reference points and is
              optimised against the fixed reference map (perplexity 5, learning rate 0.1,
              exaggeration 1.5, 250 iterations: openTSNE's documented defaults for adding
              points). It needs an affinity object over the reference points; it is rebuilt
              here from `ref_x` (an Annoy index of the reference points plus their perplexity-5
              affinities), which is the larger part of its cost.
    knn       the position each new point would get from its k = 10 nearest reference points in
              the 50-d space: their map positions weighted by a soft kernel of their distances
              (nearest 1, k-th e^-1). No optimisation follows: there is no gradient step of only
              the new points in cuML, and a numpy one would cost O(q m). It runs wherever a kNN
              search runs: cuML's NearestNeighbors on a GPU, FAISS on a CPU (`neighbours.py`).
    auto      opentsne on the CPU backend, knn on cuML (which has no t-SNE transform).

A placed point's cluster is that of its nearest k-means centroid in the 50-d space
(`nearest_centroid`), as k-means itself would assign it; its group follows from its cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from embednv.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("auto", "opentsne", "knn")
KNN_K = 10  # reference neighbours averaged by the knn method
QUERY_ROWS = 65_536  # new points per kNN query batch on CPU: bounds the (batch, k) distance arrays
# On cuML a batch of 4,096 queries against a 100k-point reference is 1.6 GB of distances even if
# its brute-force search did not tile them (it does: RAFT); the GPU memory plan in docs/map.md counts that.
GPU_QUERY_ROWS = 4_096


@dataclass(frozen=True)
class TransformParams:
    """openTSNE's `transform` settings (its documented defaults for adding points to a map)."""

    perplexity: float = 5.0  # low: a new point attends to its closest reference points only
    k: int = 25  # neighbours whose median position is the starting point
    learning_rate: float = 0.1
    exaggeration: float = 1.5
    n_iter: int = 250
    max_grad_norm: float = 0.25  # keeps points that overlap reference points from shooting off


def resolve_method(method: str, backend_name: str) -> str:
    """'opentsne' or 'knn' for `method` (auto|opentsne|knn) on the named backend."""
    if method not in METHODS:
        raise ConfigError(f"Invalid placement method {method!r}. Valid: {', '.join(METHODS)}")
    if method == "auto":
        return "knn" if backend_name == "cuml" else "opentsne"
    if method == "opentsne" and backend_name == "cuml":
        raise ConfigError("placement method opentsne runs on the CPU backend only; use knn with cuML")
    return method


def place(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    new_x: np.ndarray,
    method: str,
    seed: int = 0,
    n_jobs: int = 1,
    backend=None,
) -> np.ndarray:
    """(q, 2) float32 map positions of `new_x` on the map `ref_y`, which is not modified."""
    if len(new_x) == 0:
        return np.empty((0, 2), dtype=np.float32)
    assert ref_x.shape[0] == ref_y.shape[0] and ref_x.shape[1] == new_x.shape[1], (ref_x.shape, ref_y.shape)
    if method == "opentsne":
        return place_opentsne(ref_x, ref_y, new_x, seed, n_jobs)
    if method == "knn":
        return place_knn(ref_x, ref_y, new_x, backend=backend)
    raise ValueError(f"Invalid placement method {method!r}: resolve it first (resolve_method)")


def place_opentsne(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    new_x: np.ndarray,
    seed: int = 0,
    n_jobs: int = 1,
    params: TransformParams = TransformParams(),
) -> np.ndarray:
    """openTSNE transform of `new_x` onto a copy of the reference map; the copy is centred by
    openTSNE, so the centre is added back and `ref_y` itself is never touched."""
    from openTSNE import TSNEEmbedding, affinity

    m = len(ref_x)
    perplexity = min(params.perplexity, (m - 1) / 3)
    reference = affinity.PerplexityBasedNN(
        np.ascontiguousarray(ref_x, dtype=np.float32),
        perplexity=perplexity,
        method="auto",
        n_jobs=n_jobs,
        random_state=seed,
    )
    frame = np.array(ref_y, dtype=np.float64)  # openTSNE centres its embedding in place: a copy
    centre = (frame.max(axis=0) + frame.min(axis=0)) / 2
    embedding = TSNEEmbedding(frame, reference, negative_gradient_method="fft", n_jobs=n_jobs, random_state=seed)
    placed = embedding.transform(
        np.ascontiguousarray(new_x, dtype=np.float32),
        perplexity=perplexity,
        k=min(params.k, m),
        learning_rate=params.learning_rate,
        exaggeration=params.exaggeration,
        n_iter=params.n_iter,
        max_grad_norm=params.max_grad_norm,
    )
    return (np.asarray(placed, dtype=np.float64) + centre).astype(np.float32)


def place_knn(ref_x: np.ndarray, ref_y: np.ndarray, new_x: np.ndarray, k: int = KNN_K, backend=None) -> np.ndarray:
    """Kernel-weighted mean map position of each new point's k nearest reference points (50-d)."""
    k = min(k, len(ref_x))
    out = np.empty((len(new_x), 2), dtype=np.float32)
    search = nearest_search(ref_x, k, backend, len(new_x))
    step = GPU_QUERY_ROWS if getattr(backend, "name", "cpu") == "cuml" else QUERY_ROWS
    for start in range(0, len(new_x), step):
        rows = slice(start, start + step)
        dist, idx = search(new_x[rows])  # (b, k) each, nearest first
        d2 = dist.astype(np.float64) ** 2
        spread = d2[:, -1:] - d2[:, :1]
        weights = np.exp(-(d2 - d2[:, :1]) / np.where(spread > 0, spread, 1.0))  # nearest 1, k-th e^-1
        weights /= weights.sum(axis=1, keepdims=True)
        out[rows] = np.einsum("bk,bkc->bc", weights, ref_y[idx].astype(np.float64))
    return out


def nearest_search(ref_x: np.ndarray, k: int, backend=None, n_queries: int = 0):
    """A function `queries -> (distances, indices)` of the k nearest rows of `ref_x`: cuML's
    NearestNeighbors with the cuML backend, FAISS's otherwise (`neighbours.py`: exact, or an
    inverted-file index when `n_queries` x the reference is large)."""
    if getattr(backend, "name", "cpu") == "cuml":
        from cuml.neighbors import NearestNeighbors as GpuNN

        model = GpuNN(n_neighbors=k, output_type="numpy").fit(ref_x)
        return lambda q: tuple(np.asarray(a) for a in model.kneighbors(q))
    from embednv.mapping.neighbours import Neighbours

    return Neighbours(ref_x, n_queries).search_for(k)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n,) int32: the index of each row's nearest centroid (squared Euclidean, ties to the lower index)."""
    out = np.empty(len(x), dtype=np.int32)
    c2 = (centroids.astype(np.float64) ** 2).sum(axis=1)
    for start in range(0, len(x), QUERY_ROWS):
        block = x[start : start + QUERY_ROWS].astype(np.float64)
        d2 = c2[None, :] - 2 * block @ centroids.T.astype(np.float64)  # + |x|^2, the same for every centroid
        out[start : start + QUERY_ROWS] = d2.argmin(axis=1)
    return out
