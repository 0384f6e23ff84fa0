"""Where the heavy steps run: cuML on a CUDA GPU, or scikit-learn/openTSNE on CPU.

Both backends expose the same small contract, so the phase modules never know which one runs:

    to_device(a) / to_host(a)             numpy <-> backend arrays (used by the streaming PCA)
    kmeans(x, k, seed, n_init)            -> (labels (n,) int32, centroids (k, d) float32, inertia)
    tsne(x, params, init, seed)           -> (n, 2) float32
    describe_tsne(params)                 -> what the library is given, for the manifest
    supports_multiscale                   whether tsne() can use more than one perplexity

Parameters are chosen in the phase modules (`clusters`, `tsne`); a backend only translates them
into its library's arguments. cuML, cupy, scikit-learn and openTSNE are imported inside the
methods that use them.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from embednv.errors import BackendUnavailable, MapError

if TYPE_CHECKING:
    from embednv.mapping.tsne_params import TSNEParams

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cuml", "cpu")

# Above this many points the CPU path uses MiniBatchKMeans: full Lloyd iterations over millions
# of 50-d points cost minutes on a few cores, mini-batches (4096 points) cost seconds and lose
# little inertia at k <= 50. cuML's KMeans is fast enough at any n, so it has no such switch.
MINIBATCH_KMEANS_ABOVE = 200_000
# cuML's "pca" initialisation always scales axis 0 to this standard deviation.
CUML_INIT_STD = 1e-4


def cuml_status() -> tuple[bool, str]:
    """Whether cuML can run here, and why (for the one log line and error messages)."""
    if importlib.util.find_spec("cuml") is None:
        return False, "cuML is not installed"
    try:
        import cupy

        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - no driver, no device, broken CUDA: all mean "not here"
        return False, f"no usable CUDA GPU ({type(e).__name__}: {e})"
    if n_gpus < 1:
        return False, "no CUDA GPU"
    return True, f"cuML with {n_gpus} CUDA GPU(s)"


class CpuBackend:
    """scikit-learn KMeans and openTSNE (FFT-accelerated gradients) on all CPU cores."""

    name = "cpu"
    supports_multiscale = True

    def to_device(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def kmeans(self, x: np.ndarray, k: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray, float]:
        import warnings

        from sklearn.cluster import KMeans, MiniBatchKMeans
        from sklearn.exceptions import ConvergenceWarning

        if len(x) > MINIBATCH_KMEANS_ABOVE:
            model = MiniBatchKMeans(n_clusters=k, n_init=n_init, batch_size=4096, random_state=seed)
        else:
            model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
        with warnings.catch_warnings():
            # Fewer distinct points than k: clusters.fit_clusters drops the empty ones and says so in one line.
            warnings.filterwarnings("ignore", "Number of distinct clusters", ConvergenceWarning)
            model.fit(x)
        return model.labels_.astype(np.int32), model.cluster_centers_.astype(np.float32), float(model.inertia_)

    def tsne(self, x: np.ndarray, params: TSNEParams, init: np.ndarray, seed: int) -> np.ndarray:
        from openTSNE import TSNE, affinity

        knn = {"method": params.knn_method, "n_jobs": params.n_jobs, "random_state": seed}
        if len(params.perplexities) > 1:
            aff = affinity.Multiscale(x, perplexities=list(params.perplexities), **knn)
        else:
            aff = affinity.PerplexityBasedNN(x, perplexity=params.perplexities[0], **knn)
        embedding = TSNE(
            n_components=2,
            learning_rate=params.learning_rate,
            early_exaggeration=params.early_exaggeration,
            early_exaggeration_iter=params.early_exaggeration_iter,
            exaggeration=params.exaggeration,
            n_iter=params.n_iter,
            negative_gradient_method="fft",
            n_jobs=params.n_jobs,
            random_state=seed,
        ).fit(affinities=aff, initialization=init)
        return np.asarray(embedding, dtype=np.float32)

    def describe_tsne(self, params: TSNEParams) -> dict:
        return {
            "library": "openTSNE",
            "negative_gradient_method": "fft",
            "init": f"first two PCA columns, centred, axis 0 scaled to std {params.init_std:g}",
            "perplexities": list(params.perplexities),
            "learning_rate_early": params.learning_rate,
            "learning_rate_late": params.learning_rate,
            "iterations": params.early_exaggeration_iter + params.n_iter,
        }


class CumlBackend:
    """cuML KMeans and t-SNE (FFT) on the current CUDA device; cupy arrays for the PCA."""

    name = "cuml"
    supports_multiscale = False  # one perplexity only

    def __init__(self) -> None:
        import cupy

        self._cp = cupy

    def to_device(self, a: np.ndarray):
        return self._cp.asarray(a)

    def to_host(self, a) -> np.ndarray:
        return self._cp.asnumpy(a)

    def kmeans(self, x: np.ndarray, k: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray, float]:
        from cuml.cluster import KMeans

        model = KMeans(n_clusters=k, n_init=n_init, random_state=seed, output_type="numpy").fit(x)
        return (
            np.asarray(model.labels_, dtype=np.int32),
            np.asarray(model.cluster_centers_, dtype=np.float32),
            float(model.inertia_),
        )

    def tsne(self, x: np.ndarray, params: TSNEParams, init: np.ndarray, seed: int) -> np.ndarray:
        from cuml.manifold import TSNE

        # cuML takes `init` only as "random" or "pca" (not an array): its "pca" is the PCA of
        # `x`, whose columns are already our principal components, scaled so axis 0 has std
        # 1e-4: the same start as `init` up to the signs of the axes (cuML's tsne_runner.cuh).
        if params.init_std != CUML_INIT_STD:
            log.info("cuML scales its PCA initialisation to std %g, not %g", CUML_INIT_STD, params.init_std)
        if len(params.perplexities) > 1:  # tsne.embed drops the second scale before it gets here
            log.info("cuML t-SNE has no multi-scale affinities: using perplexity %g only", params.perplexities[0])
        kwargs = self._tsne_kwargs(params, seed)
        total_iter = kwargs.pop("max_iter")
        try:
            model = TSNE(max_iter=total_iter, **kwargs)  # cuML >= 25.x
        except TypeError:
            model = TSNE(n_iter=total_iter, **kwargs)  # older cuML named it n_iter
        return np.asarray(model.fit_transform(x), dtype=np.float32)

    @staticmethod
    def _tsne_kwargs(params: TSNEParams, seed: int) -> dict:
        perplexity = params.perplexities[0]
        return {
            "n_components": 2,
            "method": "fft",
            "perplexity": perplexity,
            "n_neighbors": min(1023, math.ceil(3 * perplexity)),  # cuML caps neighbours at 1023
            "learning_rate": params.learning_rate,
            # "adaptive" (cuML's default) silently replaces the learning rate, exaggeration and
            # neighbours chosen here; None keeps them (cuML then doubles the learning rate once
            # the early exaggeration ends: see describe_tsne).
            "learning_rate_method": None,
            "early_exaggeration": params.early_exaggeration,
            "exaggeration_iter": params.early_exaggeration_iter,
            "late_exaggeration": params.exaggeration,
            "init": "pca",
            "random_state": seed,
            "output_type": "numpy",
            "max_iter": params.early_exaggeration_iter + params.n_iter,  # cuML counts both phases
        }

    def describe_tsne(self, params: TSNEParams) -> dict:
        kwargs = self._tsne_kwargs(params, 0)
        return {
            "library": "cuML",
            "method": "fft",
            "learning_rate_method": None,
            "init": f"cuML 'pca': PCA of the input, axis 0 scaled to std {CUML_INIT_STD:g}",
            "perplexities": [kwargs["perplexity"]],
            "n_neighbors": kwargs["n_neighbors"],
            # With the adaptive method off cuML runs the exaggeration phase at learning_rate and
            # the rest at twice that (post_learning_rate = 2 * learning_rate in cuML's t_sne.pyx).
            "learning_rate_early": params.learning_rate,
            "learning_rate_late": 2 * params.learning_rate,
            "iterations": kwargs["max_iter"],
        }


Backend = CpuBackend | CumlBackend


def get_backend(name: str = "auto") -> Backend:
    """Resolve `auto|cuml|cpu` to a backend and log one line saying which and why.

    `auto` picks cuML when it is importable and a CUDA GPU is visible, else CPU. Asking for
    `cuml` where it cannot run raises `BackendUnavailable` rather than silently using the CPU.
    """
    if name not in BACKENDS:
        raise MapError(f"Invalid backend: {name!r}. Valid: {', '.join(BACKENDS)}")
    if name == "cpu":
        log.info("backend: cpu (requested)")
        return CpuBackend()
    ok, why = cuml_status()
    if name == "cuml" and not ok:
        raise BackendUnavailable(f"--backend cuml cannot run here: {why}; use --backend cpu or auto")
    if ok:
        log.info("backend: cuml (%s)", why)
        return CumlBackend()
    log.info("backend: cpu (auto: %s)", why)
    return CpuBackend()
