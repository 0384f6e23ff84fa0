"""cuml.manifold.TSNE stand-in: cuML 26.x's argument checks, then cuML's own "pca" start as the layout.

No optimisation runs: the tests that use it check where and with what the map's phases ran,
not the quality of a t-SNE.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import cuml

# The keyword arguments of cuml.manifold.TSNE in cuML 26.x (cuml/manifold/t_sne.pyx).
PARAMETERS = {
    "n_components",
    "perplexity",
    "early_exaggeration",
    "late_exaggeration",
    "learning_rate",
    "max_iter",
    "n_iter_without_progress",
    "min_grad_norm",
    "metric",
    "metric_params",
    "init",
    "random_state",
    "method",
    "angle",
    "n_neighbors",
    "perplexity_max_iter",
    "exaggeration_iter",
    "pre_momentum",
    "post_momentum",
    "learning_rate_method",
    "square_distances",
    "precomputed_knn",
    "verbose",
    "output_type",
}


class TSNE:
    def __init__(self, **kwargs) -> None:
        unknown = set(kwargs) - PARAMETERS
        if unknown:
            raise TypeError(f"TSNE.__init__() got unexpected keyword arguments {sorted(unknown)}")
        checks = {
            "init": kwargs.get("init", "random") in ("random", "pca"),
            "learning_rate_method": kwargs.get("learning_rate_method", "adaptive") in ("adaptive", "none", None),
            "method": kwargs.get("method", "fft") in ("fft", "barnes_hut", "exact"),
            "n_components": kwargs.get("n_components", 2) == 2,
            "early_exaggeration": kwargs.get("early_exaggeration", 12.0) >= 1,
            "late_exaggeration": kwargs.get("late_exaggeration", 1.0) >= 1,
            "learning_rate": kwargs.get("learning_rate", 200.0) > 0,
            "max_iter": kwargs.get("max_iter", 1000) > 0,
            "perplexity": kwargs.get("perplexity", 30.0) > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TSNE got invalid {', '.join(bad)}: {kwargs}")
        cuml.CALLS.append(("TSNE", dict(kwargs)))
        self.kwargs = kwargs

    def fit_transform(self, x) -> np.ndarray:
        _wait_for_gate()
        x = np.asarray(x, dtype=np.float64)
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        y = centred @ vt[:2].T
        return (y / max(y[:, 0].std(), 1e-12) * 1e-4).astype(np.float32)  # cuML's "pca" start: axis 0 std 1e-4


def _wait_for_gate(limit_s: float = 90.0) -> None:
    """With FAKE_CUML_TSNE_GATE=path, a long t-SNE: it ends when that file exists (or after `limit_s`),
    so a test can watch what the job log shows while the task is still running."""
    gate = os.environ.get("FAKE_CUML_TSNE_GATE")
    deadline = time.monotonic() + limit_s
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
