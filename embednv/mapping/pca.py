"""Exact PCA of all embeddings from two streaming passes, without holding n x dim in memory.

Pass 1 accumulates the d x d scatter matrix and the column sums batch by batch (float32 matrix
products, float64 accumulators); the top components are the eigenvectors of the covariance.
Pass 2 projects each batch. This equals full-batch PCA up to floating point, costs O(n d^2) in
matrix products (about 16 s for 100k x 4096 on two cores, where IncrementalPCA's per-batch SVDs
took 140-200 s), and needs d x d x 8 bytes (134 MB at d = 4096) whatever n is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from embednv.mapping.backends import Backend
from embednv.mapping.reader import ShardSet, iter_batches

log = logging.getLogger(__name__)


def auto_batch_size(dim: int) -> int:
    """Rows per record batch: about 64 MiB of float32 vectors, between 1,024 and 65,536 rows."""
    return int(min(65_536, max(1_024, (64 << 20) // (4 * dim))))


class StreamingPCA:
    """PCA fitted one batch at a time; `finalize()` once, then `transform()` batches.

    The data are shifted by the first batch's mean before accumulating, so the covariance
    `(S - n m m^T) / (n - 1)` does not lose precision to the large common mean that embedding
    vectors share.
    """

    def __init__(self, n_components: int, backend: Backend) -> None:
        self.n_components = n_components
        self.backend = backend
        self.n_seen = 0
        self._shift = None  # (d,) on the backend's device
        self._sum = None  # (d,) float64: sum of shifted rows
        self._scatter = None  # (d, d) float64: sum of outer products of shifted rows

    def partial_fit(self, x: np.ndarray) -> "StreamingPCA":
        xb = self.backend.to_device(x)  # (b, d) float32
        if self._shift is None:
            self._shift = xb.mean(axis=0)
        xc = xb - self._shift
        scatter = (xc.T @ xc).astype(np.float64)  # (d, d)
        col_sum = xc.astype(np.float64).sum(axis=0)
        self._scatter = scatter if self._scatter is None else self._scatter + scatter
        self._sum = col_sum if self._sum is None else self._sum + col_sum
        self.n_seen += len(x)
        return self

    def finalize(self) -> "StreamingPCA":
        from scipy.linalg import eigh

        n, k = self.n_seen, self.n_components
        assert n > 1, f"PCA needs at least 2 rows, saw {n}"
        scatter = self.backend.to_host(self._scatter)
        delta = self.backend.to_host(self._sum) / n  # mean of the shifted data
        cov = (scatter - n * np.outer(delta, delta)) / (n - 1)
        d = cov.shape[0]
        assert 0 < k <= d, f"n_components={k} must be in 1..{d}"
        values, vectors = eigh(cov, subset_by_index=[d - k, d - 1])  # ascending order
        values, vectors = values[::-1].clip(min=0), vectors[:, ::-1]
        # Eigenvectors have arbitrary sign; fix it (largest-magnitude loading positive, like
        # scikit-learn's svd_flip) so reruns and backends give the same map orientation.
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        self.mean_ = self.backend.to_host(self._shift).astype(np.float64) + delta  # (d,)
        self.components_ = vectors.T.astype(np.float32)  # (k, d)
        self.explained_variance_ = values
        self.explained_variance_ratio_ = values / max(np.trace(cov), np.finfo(float).tiny)
        self._mean_dev = self.backend.to_device(self.mean_.astype(np.float32))
        self._components_dev = self.backend.to_device(self.components_)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        xb = self.backend.to_device(x)
        return self.backend.to_host((xb - self._mean_dev) @ self._components_dev.T).astype(np.float32)  # (b, k)


@dataclass(frozen=True)
class Reduced:
    """All rows projected to the top principal components, in shard order."""

    ids: pa.Array  # original id type
    x: np.ndarray  # (n, n_components) float32
    explained_variance_ratio: np.ndarray  # (n_components,)


def reduce(shards: ShardSet, n_components: int, batch_size: int, backend: Backend) -> Reduced:
    """Fit PCA over every batch (pass 1), then project every batch (pass 2)."""
    k = min(n_components, shards.dim, max(shards.n_rows - 1, 1))
    if k < n_components:
        log.info("PCA to %d components (asked for %d; dim %d, %d rows)", k, n_components, shards.dim, shards.n_rows)
    pca = StreamingPCA(k, backend)
    for _, vectors in iter_batches(shards, batch_size):
        pca.partial_fit(vectors)
    pca.finalize()
    ids, parts = [], []
    for batch_ids, vectors in iter_batches(shards, batch_size, with_ids=True):
        ids.append(batch_ids)
        parts.append(pca.transform(vectors))
    x = np.concatenate(parts)
    assert len(x) == pca.n_seen, f"second pass read {len(x)} rows, first read {pca.n_seen}"
    log.info("PCA %d -> %d dims keeps %.1f%% of the variance", shards.dim, k, 100 * pca.explained_variance_ratio_.sum())
    return Reduced(ids=pa.concat_arrays(ids), x=x, explained_variance_ratio=pca.explained_variance_ratio_)
