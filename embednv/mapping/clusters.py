"""k-means cohorts on the 50-d PCA vectors (not on the 2-D map, whose distances are distorted).

Two levels: fine clusters (k-means on the points) and coarse groups of them (k-means on the
fine centroids, weighted by cluster size), so every fine cluster has exactly one parent and a
reader can go from a few broad groups down to sub-cohorts. Both levels are renumbered by size,
largest first, so cluster 0 is the biggest cohort in every run whatever the seeding order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from embednv.errors import ConfigError
from embednv.mapping.backends import Backend

log = logging.getLogger(__name__)

MAX_AUTO_CLUSTERS = 50
# k-means++ restarts; the best of 3 by inertia guards against one poor seeding at 3x the cost
# of a single run (scikit-learn's "auto" is 1). Raise for small n where runs are cheap.
N_INIT = 3
N_EXEMPLARS = 5


def auto_clusters(n: int) -> int:
    """round(sqrt(n / 2)) clamped to 2..50.

    sqrt(n/2) is the classic rule of thumb for k (Mardia et al., 1979): ~34 for 2,357 notes,
    ~71 for 10k. The cap of 50 is for the map: more names than that no longer fit legibly, and
    cohorts of a million notes are better split by rerunning on one cluster. Pass `--clusters`
    for a finer or coarser cut.
    """
    return int(min(MAX_AUTO_CLUSTERS, max(2, round(math.sqrt(n / 2)))))


@dataclass(frozen=True)
class Clusters:
    """The k-means partition of n points into k clusters."""

    labels: np.ndarray  # (n,) int32, 0 = largest cluster
    centroids: np.ndarray  # (k, d) float32
    inertia: float  # sum of squared distances to the assigned centroid
    sizes: np.ndarray  # (k,) int64
    exemplars: list[np.ndarray]  # per cluster: row indices of the points nearest its centroid

    @property
    def k(self) -> int:
        return len(self.sizes)


def fit_clusters(
    x: np.ndarray, k: int | Literal["auto"], backend: Backend, seed: int, n_init: int = N_INIT
) -> Clusters:
    """k-means of `x` (n, d) with a fixed seed; k="auto" uses `auto_clusters(n)`.

    With fewer distinct points than k, the result has fewer clusters than k: no cluster is empty.
    """
    n = len(x)
    k = auto_clusters(n) if k == "auto" else int(k)
    if not 2 <= k <= n:
        raise ConfigError(f"Number of clusters must be in 2..{n} (the number of points), got {k}")
    labels, centroids, inertia = backend.kmeans(x, k, seed, n_init)
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")  # new id -> old id
    new_of_old = np.empty(k, dtype=np.int32)
    new_of_old[order] = np.arange(k, dtype=np.int32)
    labels, centroids, sizes = new_of_old[labels], centroids[order], sizes[order]
    filled = int(np.count_nonzero(sizes))
    if filled < k:
        # Only repeated vectors leave a cluster empty (k-means cannot split identical points): the
        # map gets the clusters that hold notes. Empty ones sort last, so the labels stay as they are.
        log.info("k-means: only %d of the %d clusters hold notes (the rest of the notes repeat vectors)", filled, k)
        k, centroids, sizes = filled, centroids[:filled], sizes[:filled]
    log.info("k-means: %d clusters, inertia %.4g, sizes %d..%d", k, inertia, sizes.min(), sizes.max())
    return Clusters(
        labels=labels,
        centroids=centroids,
        inertia=inertia,
        sizes=sizes.astype(np.int64),
        exemplars=nearest_to_centroids(x, labels, centroids, N_EXEMPLARS),
    )


def nearest_to_centroids(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, m: int) -> list[np.ndarray]:
    """Per cluster, the row indices of its (up to) `m` members nearest its centroid, nearest first."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(centroids) + 1))
    exemplars = []
    for c in range(len(centroids)):
        members = order[bounds[c] : bounds[c + 1]]
        dist = np.linalg.norm(x[members] - centroids[c], axis=1)
        exemplars.append(members[np.argsort(dist, kind="stable")[:m]])
    return exemplars


MAX_AUTO_GROUPS = 10
MIN_CLUSTERS_FOR_GROUPS = 4  # below this a coarse level would only repeat the fine one


def auto_groups(k: int) -> int:
    """round(sqrt(k)) coarse groups, 2..10 and fewer than k: ~7 for the default 50 fine clusters."""
    return int(min(MAX_AUTO_GROUPS, k - 1, max(2, round(math.sqrt(k)))))


@dataclass(frozen=True)
class Groups:
    """The coarse level: which group each fine cluster belongs to."""

    parent: np.ndarray  # (k,) int32: the group of each fine cluster, 0 = largest group
    labels: np.ndarray  # (n,) int32: the group of each point
    sizes: np.ndarray  # (g,) int64
    exemplars: list[np.ndarray]  # per group: row indices of the points nearest its centroid

    @property
    def k(self) -> int:
        return len(self.sizes)


def fit_groups(x: np.ndarray, clusters: Clusters, seed: int, groups: int | Literal["auto"] = "auto") -> Groups:
    """Group the fine clusters by k-means on their centroids, weighted by size.

    It runs on k <= a few hundred centroids, so it costs nothing and stays on CPU whatever the
    backend; points inherit the group of their cluster, so the levels nest exactly.
    """
    from sklearn.cluster import KMeans

    k = clusters.k
    g = auto_groups(k) if groups == "auto" else int(groups)
    if k < MIN_CLUSTERS_FOR_GROUPS or not 2 <= g < k:
        parent = np.arange(k, dtype=np.int32)  # one level: every cluster is its own group
    else:
        model = KMeans(n_clusters=g, n_init=10, random_state=seed)
        parent = model.fit(clusters.centroids, sample_weight=clusters.sizes).labels_.astype(np.int32)
    sizes = np.bincount(parent, weights=clusters.sizes, minlength=parent.max() + 1).astype(np.int64)
    order = np.argsort(-sizes, kind="stable")
    new_of_old = np.empty(len(sizes), dtype=np.int32)
    new_of_old[order] = np.arange(len(sizes), dtype=np.int32)
    parent, sizes = new_of_old[parent], sizes[order]
    labels = parent[clusters.labels]
    centroids = np.stack([x[labels == c].mean(axis=0) for c in range(len(sizes))])
    log.info("coarse level: %d groups of the %d clusters, sizes %d..%d", len(sizes), k, sizes.min(), sizes.max())
    return Groups(parent, labels, sizes, nearest_to_centroids(x, labels, centroids, N_EXEMPLARS))
