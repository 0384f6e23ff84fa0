import numpy as np
import pytest

from embednv.mapping.known_labels import KnownLabels
from embednv.mapping.metrics import knn_preservation, label_agreement, label_composition, silhouette


def test_knn_preservation_is_one_for_an_isometry_and_low_for_noise():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((800, 2))
    x = np.hstack([y * 3, np.zeros((800, 48))])  # same neighbours, embedded in 50-d
    assert knn_preservation(x, y, sample=300, seed=1) == pytest.approx(1.0)
    noise = rng.standard_normal((800, 2))
    assert knn_preservation(x, noise, sample=300, seed=1) < 0.1


def test_knn_preservation_is_seeded():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((500, 10)), rng.standard_normal((500, 2))
    assert knn_preservation(x, y, sample=100, seed=5) == knn_preservation(x, y, sample=100, seed=5)


def test_label_agreement_skips_unknown_labels():
    known = ["a", "a", "b", "b", None, "c"]
    pred = np.array([1, 1, 0, 0, 2, 2])
    scores = label_agreement(KnownLabels.from_values(known), pred)
    assert scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    assert scores["n_labelled"] == 5


def test_label_composition_and_silhouette():
    comp = label_composition(KnownLabels.from_values(["x", "y", "x", None, "z"]), np.array([0, 0, 0, 1, 1]), 2, top=2)
    assert comp == [[("x", 2), ("y", 1)], [("z", 1)]]
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    assert silhouette(x, np.array([0, 0, 1, 1])) > 0.9
    assert silhouette(x, np.zeros(4, int)) is None
