"""How much to trust the map: neighbour preservation, cluster separation, agreement with labels.

All sampled metrics take a seed, so a rerun reports the same numbers.
"""

from __future__ import annotations

import logging

import numpy as np

from embednv.mapping.known_labels import UNKNOWN, KnownLabels

log = logging.getLogger(__name__)

KNN_K = 10
# 5,000 query points give the kNN preservation to about +-0.5 percentage points and cost a
# few seconds even at a million points (each query scans all n in 50-d).
KNN_SAMPLE = 5_000
# Silhouette is O(sample^2); 5,000 points keep it to seconds with a stable estimate.
SILHOUETTE_SAMPLE = 5_000


def knn_preservation(x: np.ndarray, y: np.ndarray, k: int = KNN_K, sample: int = KNN_SAMPLE, seed: int = 0) -> float:
    """Mean fraction of each sampled point's k nearest neighbours in `x` (n, d) kept in `y` (n, 2).

    Neighbours are searched among all n points in both spaces; 1.0 means the map keeps every
    local neighbourhood, k/n is what a random layout scores.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    hits = np.zeros(len(idx))
    neighbours = []
    for space in (x, y):
        found = NearestNeighbors(n_neighbors=k + 1).fit(space).kneighbors(space[idx], return_distance=False)
        # Drop the point itself wherever it sorts (duplicates can tie with it), keep k others.
        neighbours.append([row[row != i][:k] for row, i in zip(found, idx)])
    for j, (high, low) in enumerate(zip(*neighbours)):
        hits[j] = len(np.intersect1d(high, low, assume_unique=True)) / k
    return float(hits.mean())


def silhouette(x: np.ndarray, labels: np.ndarray, sample: int = SILHOUETTE_SAMPLE, seed: int = 0) -> float | None:
    """Mean silhouette of the clusters in `x` on a seeded sample; None when it is undefined.

    It needs 2 to size - 1 clusters in the sample: a sample of 5,000 from a million notes that are
    nearly all one cluster may hold only one, and every note in its own cluster gives no score.
    """
    from sklearn.metrics import silhouette_score

    # The very sample silhouette_score(sample_size=, random_state=seed) draws, checked before it is scored.
    rows = np.random.RandomState(seed).permutation(len(x))[: min(sample, len(x))]
    if not 2 <= len(np.unique(labels[rows])) <= len(rows) - 1:
        return None
    return float(silhouette_score(x[rows], labels[rows]))


def label_agreement(known: KnownLabels, labels: np.ndarray) -> dict[str, float | int]:
    """NMI and ARI between known labels (rows without one are skipped) and cluster labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    mask = known.codes != UNKNOWN
    if mask.sum() < 2:
        log.warning("fewer than 2 points have a label; no NMI/ARI")
        return {"n_labelled": int(mask.sum())}
    truth, pred = known.codes[mask], labels[mask]
    return {
        "nmi": float(normalized_mutual_info_score(truth, pred)),
        "ari": float(adjusted_rand_score(truth, pred)),
        "n_labelled": int(mask.sum()),
    }


def label_composition(known: KnownLabels, labels: np.ndarray, k: int, top: int = 3) -> list[list[tuple[str, int]]]:
    """Per cluster, its `top` most common known labels with counts (rows without a label skipped)."""
    mask = known.codes != UNKNOWN
    m = len(known.names)
    counts = np.bincount(labels[mask].astype(np.int64) * m + known.codes[mask], minlength=k * m).reshape(k, m)
    composition = []
    for row in counts:
        present = sorted((-int(row[c]), known.names[c]) for c in np.flatnonzero(row))
        composition.append([(name, -neg) for neg, name in present[:top]])
    return composition
