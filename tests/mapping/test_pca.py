import numpy as np
import pyarrow as pa
import pytest

from embednv.mapping import pca as pca_module
from embednv.mapping.backends import CpuBackend
from embednv.mapping.pca import StreamingPCA, reduce
from embednv.shards import open_shards


def _full_pca(x, k):
    from sklearn.decomposition import PCA

    return PCA(n_components=k, svd_solver="full").fit(x)


def test_streaming_pca_equals_full_pca_on_minilm_like_vectors(tmp_path, shards, minilm):
    x, _ = minilm(700, dim=384, seed=1)
    shards(tmp_path / "emb", np.arange(700), x, n_shards=7)
    reduced = reduce(open_shards(tmp_path / "emb"), n_components=20, batch_size=64, backend=CpuBackend())
    full = _full_pca(x.astype(np.float64), 20)
    assert np.allclose(reduced.explained_variance_ratio, full.explained_variance_ratio_, rtol=1e-4, atol=1e-7)
    projected = full.transform(x.astype(np.float64))
    # Same subspace, component by component (signs may differ between conventions).
    for j in range(10):  # leading components are well separated; trailing ones may rotate
        corr = np.corrcoef(reduced.x[:, j], projected[:, j])[0, 1]
        assert abs(corr) > 0.9999, (j, corr)
    assert reduced.x.dtype == np.float32 and reduced.x.shape == (700, 20)


def test_fit_is_batch_size_invariant_and_signs_are_fixed():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 30)) * np.linspace(4, 1, 30) + 10).astype(np.float32)
    one = StreamingPCA(5, CpuBackend()).partial_fit(x).finalize()
    many = StreamingPCA(5, CpuBackend())
    for start in range(0, 300, 7):  # odd batch sizes, down to a last batch of 6 rows
        many.partial_fit(x[start : start + 7])
    many.finalize()
    assert np.allclose(one.transform(x), many.transform(x), atol=1e-4)
    assert np.allclose(one.mean_, x.mean(axis=0, dtype=np.float64), atol=1e-4)


def test_reading_is_by_record_batches_over_many_small_shards(tmp_path, monkeypatch, shards, minilm):
    x, _ = minilm(1000, dim=32, seed=2)
    ids = pa.array([f"note-{i:04d}" for i in range(1000)])  # string ids keep their type
    shards(tmp_path / "emb", ids, x, n_shards=40, row_group_size=10)
    seen = []
    original = StreamingPCA.partial_fit

    def spy(self, batch):
        seen.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(StreamingPCA, "partial_fit", spy)
    reduced = reduce(open_shards(tmp_path / "emb"), n_components=8, batch_size=16, backend=CpuBackend())
    assert max(seen) <= 16 and sum(seen) == 1000 and len(seen) >= 1000 // 16
    assert reduced.ids.type == pa.string()
    assert reduced.ids.to_pylist() == ids.to_pylist()  # shard order, row order kept
    assert reduced.x.shape == (1000, 8)


def test_components_are_capped_by_dim_and_rows(tmp_path, shards, minilm):
    x, _ = minilm(30, dim=16, seed=3)
    shards(tmp_path / "emb", np.arange(30), x, n_shards=2)
    assert reduce(open_shards(tmp_path / "emb"), 50, 8, CpuBackend()).x.shape == (30, 16)


@pytest.mark.parametrize("dim, rows", [(4096, 1024), (384, 10922), (64, 65536), (10**6, 1024)])
def test_auto_batch_size_is_about_16_mib(dim, rows):
    assert pca_module.auto_batch_size(dim) == rows


def test_mirror_upper_makes_the_full_symmetric_matrix():
    from embednv.mapping.pca import _mirror_upper

    full = np.random.default_rng(0).standard_normal((300, 300))
    full = full + full.T
    assert np.array_equal(_mirror_upper(np.triu(full), step=64), full)
    assert np.array_equal(_mirror_upper(full.copy(), step=64), full)  # already full (GPU path): unchanged
