"""The map's heavy phases in one function: PCA, two k-means levels, t-SNE, and the metrics on the 50-d vectors.

`compute` runs wherever the placement puts it (`placement.py`): in the driver, or inside one
Ray task on a GPU worker (`ray_stage.py`). Both call this very function, so the two paths
cannot drift. It streams the shards itself and returns only what the driver needs to annotate,
write and render: ids, 2-D coordinates, labels, centroids, exemplar rows and scores. The
(n, 50) matrix stays where it was computed. No note text reaches this module.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from embednv.io import is_uri
from embednv.mapping.backends import Backend
from embednv.mapping.clusters import Clusters, Groups
from embednv.mapping.tsne_params import TSNEParams
from embednv.shards import ShardSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeavyRequest:
    """What the heavy phases need; small and picklable, so it can travel to a Ray worker."""

    emb_dir: str  # absolute path or URI: a worker resolves it on its own node
    clusters: int | Literal["auto"]
    tsne: TSNEParams
    backend: str  # auto|cuml|cpu, resolved where the phases run
    seed: int
    n_components: int
    batch_size: int | Literal["auto"]
    knn_sample: int
    silhouette_sample: int
    sample_above: int  # above this many notes, fit t-SNE on a stratified sample and place the rest (sample.py)
    sample_size: int
    place_method: str  # auto|opentsne|knn (place.py)
    refine_iter: int  # after sample-then-place on CPU: t-SNE iterations over every note (refine.py); 0: none

    @classmethod
    def of(cls, config: Any) -> HeavyRequest:
        """The request for a MapConfig (any object with these field names)."""
        values = {f.name: getattr(config, f.name) for f in fields(cls)}
        emb_dir = str(values["emb_dir"])
        values["emb_dir"] = emb_dir if is_uri(emb_dir) else os.path.abspath(os.path.expanduser(emb_dir))
        return cls(**values)


@dataclass(frozen=True)
class Heavy:
    """What comes back from the heavy phases: everything but the (n, 50) matrix."""

    ids: pa.Array  # shard order, original id type
    y: np.ndarray  # (n, 2) float32 t-SNE coordinates
    clusters: Clusters
    groups: Groups
    tsne: TSNEParams  # resolved, as run
    tsne_as_run: dict  # what the t-SNE library was actually given (backend.describe_tsne)
    scores: dict  # knn_preservation_10, silhouette, inertia, pca_explained_variance
    n_components: int
    batch_size: int
    backend: str
    timings: dict[str, float]  # seconds per phase, measured where the phase ran
    where: dict  # placement, host, pid (+ Ray node id and GPU ids on a worker)
    x: np.ndarray  # (n, 50) float32 PCA coordinates: kept in the map (`state.py`) for `--update`; 200 bytes a note
    pca_components: np.ndarray  # (50, dim) float32
    pca_mean: np.ndarray  # (dim,) float64
    sampled: dict | None = None  # when t-SNE was fitted on a sample: its size, floor, and how the rest was placed
    peak_rss_mb: dict[str, int | None] = field(default_factory=dict)  # per phase, where it ran (MiB)


def process() -> dict:
    """This process's host and pid: the manifest tells the driver from the process that computed."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def here(placement: str, **extra: Any) -> dict:
    """Where the heavy phases run, for the log lines and the manifest."""
    return {"placement": placement, **process(), **extra}


def describe(where: dict, backend: str) -> str:
    """'local on host-a (pid 12)' / 'gpu-worker on host-b (node 1a2b3c4d, GPU 0)', then the backend."""
    if "node_id" in where:
        detail = f"node {where['node_id'][:8]}, GPU {','.join(where['gpu_ids']) or 'none'}"
    else:
        detail = f"pid {where['pid']}"
    return f"{where['placement']} on {where['host']} ({detail}), backend {backend}"


def compute(request: HeavyRequest, backend: Backend, where: dict, shards: ShardSet | None = None) -> Heavy:
    """Run PCA, k-means, groups, t-SNE and the neighbour metrics; log each phase with where it ran."""
    from embednv.mapping import metrics
    from embednv.mapping.checks import check_parameters
    from embednv.mapping.clusters import fit_clusters, fit_groups
    from embednv.mapping.pca import auto_batch_size, reduce
    from embednv.shards import open_shards

    shards = shards or open_shards(request.emb_dir)
    check_parameters(request.emb_dir, shards.n_rows, request.clusters, request.tsne)  # also on a GPU worker
    batch_size = auto_batch_size(shards.dim) if request.batch_size == "auto" else int(request.batch_size)
    timings: dict[str, float] = {}
    peaks: dict[str, int | None] = {}
    at = describe(where, backend.name)
    with _phase("pca", timings, at, peaks):
        reduced = reduce(shards, request.n_components, batch_size, backend)
    x = reduced.x
    with _phase("kmeans", timings, at, peaks):
        clusters = fit_clusters(x, request.clusters, backend, request.seed)
        groups = fit_groups(x, clusters, request.seed)
    with _phase("tsne", timings, at, peaks):
        y, tsne_params, sampled = _layout(x, clusters.labels, request, backend, timings, at)
    with _phase("metrics", timings, at, peaks):
        scores = {
            "knn_preservation_10": metrics.knn_preservation(x, y, 10, request.knn_sample, request.seed),
            "silhouette": metrics.silhouette(x, clusters.labels, request.silhouette_sample, request.seed),
            "inertia": clusters.inertia,
            "pca_explained_variance": float(reduced.explained_variance_ratio.sum()),
        }
    return Heavy(
        ids=reduced.ids,
        y=y,
        clusters=clusters,
        groups=groups,
        tsne=tsne_params,
        tsne_as_run=backend.describe_tsne(tsne_params),
        scores=scores,
        n_components=x.shape[1],
        batch_size=batch_size,
        backend=backend.name,
        timings=timings,
        where=where,
        peak_rss_mb=peaks,
        x=x,
        pca_components=reduced.components,
        pca_mean=reduced.mean,
        sampled=sampled,
    )


def _layout(x: np.ndarray, labels: np.ndarray, request: HeavyRequest, backend: Backend, timings: dict, at: str):
    """t-SNE of every point, or (above `request.sample_above`) of a stratified sample with the
    rest placed onto it: ((n, 2) float32, resolved t-SNE parameters, what was sampled or None)."""
    from embednv.mapping.place import place, resolve_method
    from embednv.mapping.refine import REFINE_PERPLEXITY, refine
    from embednv.mapping.sample import SAMPLE_FLOOR, stratified_sample
    from embednv.mapping.tsne import embed

    n = len(x)
    if n <= request.sample_above or request.sample_size >= n:
        y, params = embed(x, request.tsne, backend, request.seed)
        return y, params, None
    # auto: the kNN position, then the refinement below does what openTSNE's transform would, and more.
    method = "knn" if request.place_method == "auto" else resolve_method(request.place_method, backend.name)
    refine_iter = request.refine_iter if backend.name != "cuml" else 0  # cuML's t-SNE takes no starting layout
    rows = stratified_sample(labels, request.sample_size, request.seed)
    log.info(
        "t-SNE on a sample of %d of %d notes (every cluster, >= %d each), the rest placed by %s%s",
        len(rows),
        n,
        SAMPLE_FLOOR,
        method,
        f", then {refine_iter} iterations over every note" if refine_iter else "",
    )
    y_fit, params = embed(x[rows], request.tsne, backend, request.seed)
    rest = np.ones(n, dtype=bool)
    rest[rows] = False
    start = time.perf_counter()
    y = np.empty((n, 2), dtype=np.float32)
    y[rows] = y_fit
    y[rest] = place(x[rows], y_fit, x[rest], method, request.seed, params.n_jobs, backend)
    timings["place"] = time.perf_counter() - start
    log.info("place: %.1f s for %d notes, %s", timings["place"], int(rest.sum()), at)
    refined = None
    if refine_iter:
        start = time.perf_counter()
        y = refine(x, y, refine_iter, REFINE_PERPLEXITY, request.seed, params.n_jobs)
        timings["refine"] = time.perf_counter() - start
        refined = {"iterations": refine_iter, "perplexity": REFINE_PERPLEXITY}
        log.info("refine: %.1f s for %d notes, %s", timings["refine"], n, at)
    sampled = {
        "fitted": len(rows),
        "placed": int(rest.sum()),
        "floor": f"min({SAMPLE_FLOOR}, sample / (2 x clusters))",
        "method": method,
        "refined": refined,
    }
    return y, params, sampled


@contextmanager
def _phase(name: str, timings: dict[str, float], at: str, peaks: dict[str, int | None]):
    from embednv.runtime import peak_rss_mb, reset_peak_rss

    reset_peak_rss()  # this phase's own peak, not the largest so far
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    peaks[name] = peak_rss_mb()
    log.info("%s: %.1f s, %s", name, timings[name], at)
