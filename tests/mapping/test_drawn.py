"""map.html above its point budget: each cluster keeps its share, every exemplar is drawn, nothing twice."""

import numpy as np
import pytest

from embednv.mapping.drawn import drawn_rows


def test_under_the_budget_everything_is_drawn():
    assert drawn_rows(np.zeros(50, np.int64), [], budget=50) is None


def test_a_sample_keeps_each_clusters_share_and_every_exemplar():
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=10_000, p=[0.5, 0.3, 0.15, 0.049, 0.001])
    exemplars = [np.flatnonzero(labels == c)[-3:] for c in range(5)] + [np.array([0, 0, 1])]  # repeats
    rows = drawn_rows(labels, exemplars, budget=1_000, seed=3)
    assert len(rows) == 1_000 and len(np.unique(rows)) == 1_000 and (np.diff(rows) > 0).all()
    assert set(np.concatenate(exemplars).tolist()) <= set(rows.tolist())
    drawn, sizes = np.bincount(labels[rows], minlength=5), np.bincount(labels, minlength=5)
    # Each share to within the two points that the tiniest cluster's three exemplars take beyond its share.
    assert (np.abs(drawn - np.maximum(sizes * 1_000 / 10_000, 3)) <= 2).all(), (drawn, sizes)
    assert (rows == drawn_rows(labels, exemplars, budget=1_000, seed=3)).all()  # same seed, same sample
    assert not (rows == drawn_rows(labels, exemplars, budget=1_000, seed=4)).all()


def test_a_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        drawn_rows(np.zeros(5, np.int64), [], budget=0)
