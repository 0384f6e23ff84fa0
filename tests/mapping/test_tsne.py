import dataclasses

import numpy as np
import pytest

from embednv.mapping.tsne import pca_init
from embednv.mapping.tsne_params import TSNEParams
from embednv.runtime import usable_cpus


def test_defaults_for_a_mid_sized_map_follow_kobak_berens_and_belkina():
    p = TSNEParams().resolve(15_000)
    assert p.learning_rate == pytest.approx(15_000 / 12)
    assert p.early_exaggeration == 12
    assert p.early_exaggeration_iter == 250
    assert p.perplexity == 30
    assert p.multiscale is True
    assert p.perplexities == (30, 150)  # [30, n/100]
    assert p.init_std == 1e-4
    assert p.n_jobs == usable_cpus()


def test_multiscale_only_up_to_20k_and_when_n_over_100_exceeds_perplexity():
    assert TSNEParams().resolve(20_000).perplexities == (30, 200)
    assert TSNEParams().resolve(20_001).perplexities == (30,)
    assert TSNEParams().resolve(100_000).perplexities == (30,)  # the default 100k map must finish
    assert TSNEParams(multiscale=True).resolve(50_000).perplexities == (30, 500)
    assert TSNEParams().resolve(2_357).perplexities == (30,)  # n/100 = 23.6 < 30: one scale
    assert TSNEParams(multiscale=False).resolve(50_000).perplexities == (30,)
    assert TSNEParams(perplexity=50).resolve(20_000).perplexities == (50, 200)


def test_learning_rate_is_n_over_12_with_a_floor_of_200():
    assert TSNEParams().resolve(1_200_000).learning_rate == pytest.approx(100_000)
    assert TSNEParams().resolve(600).learning_rate == 200
    assert TSNEParams(learning_rate=123).resolve(10**6).learning_rate == 123


def test_resolve_keeps_explicit_values_and_is_frozen():
    p = TSNEParams(perplexity=10, n_jobs=1)
    r = p.resolve(5_000)
    assert (r.perplexity, r.n_jobs, p.perplexity) == (10, 1, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.perplexity = 5
    with pytest.raises(ValueError, match="perplexity"):
        TSNEParams(perplexity=0).resolve(100)


def test_pca_init_is_the_first_two_components_scaled_to_std_1e_4():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 50)) * np.linspace(5, 1, 50) + 3
    init = pca_init(x)
    assert init.shape == (1000, 2)
    assert init[:, 0].std() == pytest.approx(1e-4)
    assert np.allclose(init.mean(axis=0), 0, atol=1e-12)
    # Same direction as the PCA columns, just rescaled (axis 1 keeps its ratio to axis 0).
    assert np.corrcoef(init[:, 0], x[:, 0])[0, 1] == pytest.approx(1)
    assert init[:, 1].std() / init[:, 0].std() == pytest.approx(x[:, 1].std() / x[:, 0].std())
