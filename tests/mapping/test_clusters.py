import numpy as np
import pytest

from embednv.mapping.backends import CpuBackend
from embednv.mapping.clusters import auto_clusters, fit_clusters, nearest_to_centroids


@pytest.mark.parametrize("n, k", [(2, 2), (8, 2), (2_357, 34), (5_000, 50), (10**6, 50)])
def test_auto_clusters_is_sqrt_half_n_clamped_to_2_50(n, k):
    assert auto_clusters(n) == k


def test_clusters_are_numbered_by_size_with_exemplars_nearest_their_centroid():
    rng = np.random.default_rng(0)
    sizes = [40, 160, 90]
    x = np.concatenate([rng.normal(loc=10 * i, size=(s, 3)) for i, s in enumerate(sizes)]).astype(np.float32)
    result = fit_clusters(x, 3, CpuBackend(), seed=0)
    assert result.sizes.tolist() == [160, 90, 40]  # largest first
    assert result.labels[40:200].tolist() == [0] * 160
    for c in range(3):
        members = np.flatnonzero(result.labels == c)
        ex = result.exemplars[c]
        assert len(ex) == 5 and set(ex) <= set(members)
        dist = np.linalg.norm(x[members] - result.centroids[c], axis=1)
        assert np.allclose(np.sort(dist)[:5], np.linalg.norm(x[ex] - result.centroids[c], axis=1))


def test_same_seed_same_clusters_and_k_is_validated():
    x = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    a, b = fit_clusters(x, 5, CpuBackend(), seed=4), fit_clusters(x, 5, CpuBackend(), seed=4)
    assert np.array_equal(a.labels, b.labels) and a.inertia == b.inertia
    with pytest.raises(ValueError, match="2..300"):
        fit_clusters(x, 301, CpuBackend(), seed=0)


def test_nearest_to_centroids_handles_small_and_empty_clusters():
    x = np.array([[0.0], [1.0], [5.0]])
    ex = nearest_to_centroids(x, np.array([0, 0, 1]), np.array([[0.9], [5.0], [9.0]]), m=5)
    assert [e.tolist() for e in ex] == [[1, 0], [2], []]


def test_groups_recover_a_planted_hierarchy():
    """2 far-apart super-topics of 3 sub-topics each: 6 clusters, and the 2 groups are the super-topics."""
    from embednv.mapping.backends import CpuBackend
    from embednv.mapping.clusters import fit_clusters, fit_groups

    rng = np.random.default_rng(0)
    supers = rng.standard_normal((2, 20)) * 20
    subs = np.concatenate([s + rng.standard_normal((3, 20)) * 4 for s in supers])
    sizes = [50, 80, 110, 60, 90, 120]
    x = np.concatenate([sub + rng.standard_normal((n, 20)) * 0.3 for sub, n in zip(subs, sizes)]).astype(np.float32)
    truth_super = np.repeat([0, 0, 0, 1, 1, 1], sizes)
    clusters = fit_clusters(x, 6, CpuBackend(), seed=0)
    groups = fit_groups(x, clusters, seed=0)
    assert groups.k == 2
    assert groups.sizes.tolist() == [270, 240]  # renumbered largest first: super-topic 1 then 0
    assert (groups.labels == 1 - truth_super).all()
    assert (groups.labels == groups.parent[clusters.labels]).all()  # the levels nest exactly


def test_too_few_clusters_for_groups_keep_one_level():
    from embednv.mapping.backends import CpuBackend
    from embednv.mapping.clusters import auto_groups, fit_clusters, fit_groups

    assert [auto_groups(k) for k in (4, 9, 50, 400)] == [2, 3, 7, 10]
    x = np.random.default_rng(1).standard_normal((60, 5)).astype(np.float32)
    clusters = fit_clusters(x, 3, CpuBackend(), seed=0)
    groups = fit_groups(x, clusters, seed=0)
    assert groups.parent.tolist() == [0, 1, 2] and (groups.labels == clusters.labels).all()
