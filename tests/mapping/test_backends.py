import logging

import pytest

from embednv.errors import BackendUnavailable, MapError
from embednv.mapping import backends


@pytest.mark.skipif(backends.cuml_status()[0], reason="cuML and a GPU are present: auto picks cuml")
def test_auto_picks_cpu_here_and_says_why(caplog):
    caplog.set_level(logging.INFO, logger="embednv.mapping.backends")
    backend = backends.get_backend("auto")
    assert backend.name == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.name == "embednv.mapping.backends"]
    assert len(lines) == 1 and lines[0].startswith("backend: cpu (auto: ")


def test_cuml_without_cuml_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setattr(backends, "cuml_status", lambda: (False, "cuML is not installed"))
    with pytest.raises(BackendUnavailable) as err:
        backends.get_backend("cuml")
    message = str(err.value)
    assert "\n" not in message
    assert "--backend cuml" in message and "cuML is not installed" in message and "--backend cpu" in message
    assert isinstance(err.value, MapError)


def test_cuml_installed_without_gpu_falls_back_on_auto(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="embednv.mapping.backends")
    monkeypatch.setattr(backends, "cuml_status", lambda: (False, "no CUDA GPU"))
    assert backends.get_backend("auto").name == "cpu"
    assert "no CUDA GPU" in caplog.text


def test_invalid_backend_lists_the_valid_ones():
    with pytest.raises(MapError, match="Valid: auto, cuml, cpu"):
        backends.get_backend("gpu")


def test_cpu_kmeans_contract():
    import numpy as np

    x = np.random.default_rng(0).standard_normal((200, 5)).astype(np.float32)
    labels, centroids, inertia = backends.CpuBackend().kmeans(x, 3, seed=0, n_init=1)
    assert labels.shape == (200,) and labels.dtype == np.int32
    assert centroids.shape == (3, 5) and centroids.dtype == np.float32
    assert inertia > 0


def _fake_cuml(monkeypatch, tsne_class):
    """Install stand-ins for cupy and cuML so the adapter's calls can be checked without a GPU."""
    import sys
    import types

    import numpy as np

    cupy = types.ModuleType("cupy")
    cupy.asarray, cupy.asnumpy = np.asarray, np.asarray
    manifold = types.ModuleType("cuml.manifold")
    manifold.TSNE = tsne_class
    cuml = types.ModuleType("cuml")
    cuml.manifold = manifold
    for name, module in (("cupy", cupy), ("cuml", cuml), ("cuml.manifold", manifold)):
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("iter_name", ["max_iter", "n_iter"])  # newer and older cuML
def test_cuml_tsne_gets_our_parameters_with_adaptive_mode_off(monkeypatch, iter_name):
    import numpy as np

    from embednv.mapping.tsne_params import TSNEParams

    seen = {}

    class FakeTSNE:
        def __init__(self, **kwargs):
            if "max_iter" in kwargs and iter_name == "n_iter":
                raise TypeError("unexpected keyword argument 'max_iter'")
            seen.update(kwargs)

        def fit_transform(self, x):
            return np.zeros((len(x), 2))

    _fake_cuml(monkeypatch, FakeTSNE)
    params = TSNEParams().resolve(50_000)
    y = backends.CumlBackend().tsne(np.zeros((10, 4), np.float32), params, init=None, seed=3)
    assert y.shape == (10, 2) and y.dtype == np.float32
    assert seen["learning_rate_method"] is None  # "adaptive" would override the values below
    assert (seen["method"], seen["init"], seen["random_state"]) == ("fft", "pca", 3)
    assert seen["learning_rate"] == pytest.approx(50_000 / 12)
    assert (seen["early_exaggeration"], seen["exaggeration_iter"], seen["perplexity"]) == (12, 250, 30)
    assert seen[iter_name] == 750 and seen["n_neighbors"] == 90
