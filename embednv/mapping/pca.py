"""Exact PCA of all embeddings from two streaming passes, without holding n x dim in memory.

Pass 1 accumulates the d x d scatter matrix (BLAS syrk into float32 blocks, flushed to a
float64 total) and the column sums batch by batch; the top components are the leading
eigenvectors of the covariance. Pass 2 projects each batch. This equals full-batch PCA up to
floating point and costs O(n d^2) flops: ~12 s of fitting for 100k x 4096 on two cores, where
scikit-learn's IncrementalPCA (an SVD per batch) took 140-200 s. Memory depends on d and the
batch size, not on n: ~0.7-0.9 GB peak at d = 4096.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from embednv.mapping.backends import Backend
from embednv.mapping.checks import RowCheck, check_spread
from embednv.shards import ShardSet, iter_batches

log = logging.getLogger(__name__)


def auto_batch_size(dim: int) -> int:
    """Rows per record batch: about 16 MiB of float32 vectors, between 1,024 and 65,536 rows.

    Decoding a Parquet list column holds ~7x the batch's float bytes in Arrow buffers
    (repetition/definition levels, growth by doubling): 240 MB at 1,024 x 4096, 480 MB at
    4,096 x 4096. Larger batches do not make the matrix products meaningfully faster.
    """
    return int(min(65_536, max(1_024, (16 << 20) // (4 * dim))))


# Rows summed in float32 before they are added to the float64 total: float32 keeps the
# per-batch update cheap, the periodic float64 flush keeps rounding error from growing with n.
FLUSH_ROWS = 65_536


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
        self._block = None  # (d, d) float32: upper triangle of recent rows' outer products
        self._block_rows = 0
        self._scatter = None  # (d, d) float64: the flushed blocks, upper triangle

    def partial_fit(self, x: np.ndarray) -> StreamingPCA:
        xb = self.backend.to_device(x)  # (b, d) float32
        if self._shift is None:
            self._shift = xb.mean(axis=0)
        xc = xb - self._shift
        col_sum = xc.sum(axis=0, dtype=np.float64)  # (d,)
        self._sum = col_sum if self._sum is None else self._sum + col_sum
        self._block = _add_gram(self._block, xc)
        self._block_rows += len(x)
        self.n_seen += len(x)
        if self._block_rows >= FLUSH_ROWS:
            self._flush()
        return self

    def _flush(self) -> None:
        block = self._block.astype(np.float64)
        self._scatter = block if self._scatter is None else self._scatter.__iadd__(block)
        self._block[...] = 0
        self._block_rows = 0

    def finalize(self) -> StreamingPCA:
        n, k = self.n_seen, self.n_components
        assert n > 1, f"PCA needs at least 2 rows, saw {n}"
        self._flush()
        self._block = None
        delta = self.backend.to_host(self._sum) / n  # mean of the shifted data
        cov = _mirror_upper(self.backend.to_host(self._scatter))  # becomes the covariance, in place
        self._scatter = None
        cov -= np.outer(n * delta, delta)
        cov /= n - 1
        total_variance = float(np.trace(cov))
        check_spread(total_variance, n)  # before the eigensolver, which has nothing to find in rounding noise
        d = cov.shape[0]
        assert 0 < k <= d, f"n_components={k} must be in 1..{d}"
        values, vectors = _top_eigenpairs(cov, k)
        # Eigenvectors have arbitrary sign; fix it (largest-magnitude loading positive, like
        # scikit-learn's svd_flip) so reruns and backends give the same map orientation.
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        self.mean_ = self.backend.to_host(self._shift).astype(np.float64) + delta  # (d,)
        self.components_ = vectors.T.astype(np.float32)  # (k, d)
        self.explained_variance_ = values
        self.explained_variance_ratio_ = values / total_variance  # > 0: check_spread
        self._scatter = self._block = self._sum = None  # free the d x d accumulators
        self._mean_dev = self.backend.to_device(self.mean_.astype(np.float32))
        self._components_dev = self.backend.to_device(self.components_)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        xb = self.backend.to_device(x)
        return self.backend.to_host((xb - self._mean_dev) @ self._components_dev.T).astype(np.float32)  # (b, k)


def _add_gram(acc, xc):
    """acc += xc.T @ xc (upper triangle at least) for float32 `xc` (b, d); returns acc.

    On CPU this is BLAS syrk into a Fortran-ordered accumulator: half the flops of a full
    product and no (d, d) temporary. Other array modules (cupy) use a plain product.
    """
    if isinstance(xc, np.ndarray):
        from scipy.linalg.blas import ssyrk

        if acc is None:
            acc = np.zeros((xc.shape[1],) * 2, dtype=np.float32, order="F")
        # xc.T is F-contiguous (d, b), so BLAS reads it without a copy; lower=0 fills the upper triangle.
        return ssyrk(1.0, xc.T, beta=1.0, c=acc, overwrite_c=1)
    product = xc.T @ xc
    return product if acc is None else acc.__iadd__(product)


def _mirror_upper(a: np.ndarray, step: int = 256) -> np.ndarray:
    """Copy the upper triangle of square `a` onto its lower triangle, in place, block by block
    (a whole-matrix np.triu would need two more d x d float64 copies: 268 MB at d = 4096)."""
    d = len(a)
    for i in range(0, d, step):
        j = min(i + step, d)
        a[j:, i:j] = a[i:j, j:].T
        block = a[i:j, i:j]
        block[...] = np.triu(block) + np.triu(block, 1).T
    return a


def _top_eigenpairs(cov: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending, (k,)) and eigenvectors ((d, k)) of a symmetric matrix.

    For k well below d, Lanczos (eigsh, converged to machine precision, fixed start vector so
    reruns agree) needs only matrix-vector products: 8 s against 27-64 s for LAPACK's subset
    eigh at d = 4096, k = 50 on two busy cores, with the same eigenpairs to 1e-14.
    """
    from scipy.linalg import eigh
    from scipy.sparse.linalg import eigsh

    d = cov.shape[0]
    if k < d // 2:
        values, vectors = eigsh(cov, k=k, which="LA", v0=np.full(d, 1 / np.sqrt(d)))
    else:
        values, vectors = eigh(cov, subset_by_index=[d - k, d - 1], overwrite_a=True, check_finite=False)
    order = np.argsort(-values, kind="stable")
    return values[order].clip(min=0), vectors[:, order]


@dataclass(frozen=True)
class Reduced:
    """All rows projected to the top principal components, in shard order."""

    ids: pa.Array  # original id type
    x: np.ndarray  # (n, n_components) float32
    explained_variance_ratio: np.ndarray  # (n_components,)
    components: np.ndarray  # (n_components, dim) float32: the basis `map --update` projects new notes with
    mean: np.ndarray  # (dim,) float64


def reduce(shards: ShardSet, n_components: int, batch_size: int, backend: Backend) -> Reduced:
    """Fit PCA over every batch (pass 1), then project every batch (pass 2).

    Pass 1 also checks every row (`checks.RowCheck`): after the first NaN, inf or zero vector it
    only reads on, to count and name them all, and fails before the eigensolver and pass 2.
    """
    k = min(n_components, shards.dim, max(shards.n_rows - 1, 1))
    if k < n_components:
        log.info("PCA to %d components (asked for %d; dim %d, %d rows)", k, n_components, shards.dim, shards.n_rows)
    pca = StreamingPCA(k, backend)
    rows = RowCheck()
    for batch_ids, vectors in iter_batches(shards, batch_size, with_ids=True):
        if rows.add(batch_ids, vectors):
            pca.partial_fit(vectors)
    rows.raise_if_any(shards.paths[0].rsplit("/", 1)[0], shards.id_column, shards.n_rows)
    pca.finalize()
    ids, parts = [], []
    for batch_ids, vectors in iter_batches(shards, batch_size, with_ids=True):
        ids.append(batch_ids)
        parts.append(pca.transform(vectors))
    x = np.concatenate(parts)
    assert len(x) == pca.n_seen, f"second pass read {len(x)} rows, first read {pca.n_seen}"
    log.info("PCA %d -> %d dims keeps %.1f%% of the variance", shards.dim, k, 100 * pca.explained_variance_ratio_.sum())
    return Reduced(
        ids=pa.concat_arrays(ids),
        x=x,
        explained_variance_ratio=pca.explained_variance_ratio_,
        components=pca.components_,
        mean=pca.mean_,
    )
