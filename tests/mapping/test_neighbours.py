import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from embednv.mapping import neighbours
from embednv.mapping.neighbours import Neighbours, neighbours_of_every_row


def blobs(n: int, dim: int = 50, k: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 4
    return (centres[rng.integers(0, k, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def test_small_searches_are_exact_with_euclidean_distances():
    base, queries = blobs(2_000), blobs(300, seed=1)
    distances, indices = Neighbours(base, len(queries)).search(queries, 10)
    want_d, want_i = NearestNeighbors(n_neighbors=10).fit(base).kneighbors(queries)
    assert np.array_equal(indices, want_i)
    np.testing.assert_allclose(distances, want_d, rtol=1e-4, atol=1e-4)


def test_every_row_leaves_itself_out():
    x = blobs(1_500)
    distances, indices = neighbours_of_every_row(x, 30)
    assert indices.shape == (1_500, 30) and not (indices == np.arange(1_500)[:, None]).any()
    want = NearestNeighbors(n_neighbors=31).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    assert np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(indices, want)]) > 0.999
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first


def test_large_searches_use_inverted_lists_and_keep_most_neighbours(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX_PAIRS", 0)  # what a million notes would get
    x = blobs(20_000)
    found = Neighbours(x, len(x))
    assert found.index.__class__.__name__ == "IndexIVFFlat" and found.index.nprobe == neighbours.PROBES
    _, approx = neighbours_of_every_row(x, 30)
    exact = NearestNeighbors(n_neighbors=31).fit(x).kneighbors(x[:500], return_distance=False)[:, 1:]
    recall = np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(approx[:500], exact)])
    assert recall >= 0.9, recall
    assert (approx >= 0).all()  # never a missing neighbour: short queries are searched exhaustively


@pytest.mark.parametrize("k", [1, 5])
def test_k_is_capped_at_the_base(k):
    distances, indices = Neighbours(blobs(3), 2).search(blobs(2, seed=2), k + 5)
    assert indices.shape == (2, 3) and sorted(indices[0].tolist()) == [0, 1, 2]
