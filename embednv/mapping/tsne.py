"""t-SNE of the PCA-reduced embeddings, with the parameters that make large maps work.

Defaults follow Kobak & Berens, "The art of using t-SNE for single-cell transcriptomics"
(Nat. Commun. 2019) and Belkina et al., "Automated optimized parameters for t-SNE" (Nat.
Commun. 2019): PCA initialisation, a learning rate that grows with n, early exaggeration 12,
and a multi-scale perplexity for up to 20k points. `TSNEParams.resolve(n)` turns every
"auto" into a number and the manifest records the result.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from embednv.errors import MapError
from embednv.mapping.backends import Backend
from embednv.mapping.tsne_params import TSNEParams

log = logging.getLogger(__name__)


def pca_init(x: np.ndarray, std: float = 1e-4) -> np.ndarray:
    """The first two principal components of `x`, centred, scaled so axis 0 has std `std`.

    `x` is the output of the streaming PCA, whose columns are already the principal components
    in order, so this costs nothing and inherits PCA's fixed sign convention. (n, 2) float64.
    """
    assert x.ndim == 2 and x.shape[1] >= 2, f"need (n, >=2) PCA output, got {x.shape}"
    init = x[:, :2].astype(np.float64)
    init -= init.mean(axis=0)
    scale = init[:, 0].std()
    if not scale > 0:
        # Every point would start at one place, where openTSNE's FFT grid has no extent and the
        # process segfaults. `checks.check_spread` refuses such data first; this keeps it so.
        raise MapError(f"t-SNE: all {len(x)} points start at one place (the first PCA column is constant)")
    return init * (std / scale)


def embed(x: np.ndarray, params: TSNEParams, backend: Backend, seed: int) -> tuple[np.ndarray, TSNEParams]:
    """t-SNE of `x` (n, k) -> ((n, 2) float32, the resolved parameters)."""
    resolved = params.resolve(len(x))
    if len(resolved.perplexities) > 1 and not backend.supports_multiscale:
        # Recorded as run: the manifest must not claim a second scale that was never computed.
        log.info("%s t-SNE has no multi-scale affinities: perplexity %g only", backend.name, resolved.perplexities[0])
        resolved = replace(resolved, multiscale=False, perplexities=resolved.perplexities[:1])
    log.info(
        "t-SNE of %d points: perplexities %s, learning rate %.0f, exaggeration %g then %g, %d+%d iterations",
        len(x),
        "/".join(f"{p:g}" for p in resolved.perplexities),
        resolved.learning_rate,
        resolved.early_exaggeration,
        resolved.exaggeration,
        resolved.early_exaggeration_iter,
        resolved.n_iter,
    )
    y = backend.tsne(x, resolved, pca_init(x, resolved.init_std), seed)
    assert y.shape == (len(x), 2), f"t-SNE returned {y.shape}, expected ({len(x)}, 2)"
    return y, resolved
