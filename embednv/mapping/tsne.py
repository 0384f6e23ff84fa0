"""t-SNE of the PCA-reduced embeddings, with the parameters that make large maps work.

Defaults follow Kobak & Berens, "The art of using t-SNE for single-cell transcriptomics"
(Nat. Commun. 2019) and Belkina et al., "Automated optimized parameters for t-SNE" (Nat.
Commun. 2019): PCA initialisation, a learning rate that grows with n, early exaggeration 12,
and a multi-scale perplexity for up to ~100k points. `TSNEParams.resolve(n)` turns every
"auto" into a number and the manifest records the result.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from embednv.mapping.backends import Backend

log = logging.getLogger(__name__)

Auto = Literal["auto"]


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask under a job scheduler, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TSNEParams:
    """t-SNE settings; fields set to "auto" are derived from the number of points n.

    perplexity: "auto" is 30, the effective number of neighbours each point attends to. Raise
        it (50-100) for smoother, more global maps; lower it (10-20) to split small cohorts.
    multiscale: "auto" adds a second, wide kernel of perplexity n/100 when n <= multiscale_max_n
        and n/100 > perplexity (Kobak & Berens): it keeps related clusters near each other, so
        the map's large-scale layout means something. Turn off for speed.
    multiscale_max_n: above this the wide kernel is too slow and too large: it needs 3·n/100
        neighbours per point (3,000 at 100k: ~3e8 affinities), so its cost grows ~n². Measured
        on 2 CPU cores: 10k points, 59 CPU-s for the whole t-SNE; 100k points, still building
        affinities after 23 CPU-minutes when it passed 12 GiB RSS (single scale: 285 CPU-s,
        1.3 GB). On small machines lower it (~20-30k) or pass --multiscale off.
    learning_rate: "auto" is max(200, n/12) (Belkina et al.; Kobak & Berens use the floor of
        200 for small n): with the old fixed 200, large maps stop before converging.
    early_exaggeration / early_exaggeration_iter: 12 for 250 iterations pulls clusters together
        before they are laid out; the standard values, change only to study the optimiser.
    n_iter: iterations after the early phase; 500 converges for n up to millions with the
        learning rate above. Lower only for quick looks (tests use ~150).
    exaggeration: attraction after the early phase; 1 is plain t-SNE. ~4 for n in the millions
        shows coarser, UMAP-like structure (Kobak & Berens).
    init_std: the PCA initialisation is scaled so its first axis has this standard deviation;
        1e-4 keeps early gradients small, so the global PCA layout survives optimisation.
    knn_method: openTSNE's neighbour search; "auto" is exact below 1,000 points and Annoy
        (seeded) above.
    n_jobs: "auto" is every CPU this process may use.
    """

    perplexity: float | Auto = "auto"
    multiscale: bool | Auto = "auto"
    multiscale_max_n: int = 100_000
    learning_rate: float | Auto = "auto"
    early_exaggeration: float = 12.0
    early_exaggeration_iter: int = 250
    n_iter: int = 500
    exaggeration: float = 1.0
    init_std: float = 1e-4
    knn_method: str = "auto"
    n_jobs: int | Auto = "auto"
    perplexities: tuple[float, ...] = ()  # filled by resolve(): (perplexity,) or (perplexity, n/100)

    def resolve(self, n: int) -> TSNEParams:
        """A copy with every "auto" replaced by its value for `n` points."""
        if n < 2:
            raise ValueError(f"t-SNE needs at least 2 points, got {n}")
        perplexity = 30.0 if self.perplexity == "auto" else float(self.perplexity)
        if perplexity <= 0:
            raise ValueError(f"perplexity must be positive, got {perplexity}")
        wide = n / 100
        multiscale = (
            (n <= self.multiscale_max_n and wide > perplexity) if self.multiscale == "auto" else bool(self.multiscale)
        )
        learning_rate = max(200.0, n / 12) if self.learning_rate == "auto" else float(self.learning_rate)
        return replace(
            self,
            perplexity=perplexity,
            multiscale=multiscale,
            learning_rate=learning_rate,
            n_jobs=cpu_count() if self.n_jobs == "auto" else int(self.n_jobs),
            perplexities=(perplexity, wide) if multiscale and wide > perplexity else (perplexity,),
        )


def pca_init(x: np.ndarray, std: float = 1e-4) -> np.ndarray:
    """The first two principal components of `x`, centred, scaled so axis 0 has std `std`.

    `x` is the output of the streaming PCA, whose columns are already the principal components
    in order, so this costs nothing and inherits PCA's fixed sign convention. (n, 2) float64.
    """
    assert x.ndim == 2 and x.shape[1] >= 2, f"need (n, >=2) PCA output, got {x.shape}"
    init = x[:, :2].astype(np.float64)
    init -= init.mean(axis=0)
    scale = init[:, 0].std()
    return init * (std / scale) if scale > 0 else init


def embed(x: np.ndarray, params: TSNEParams, backend: Backend, seed: int) -> tuple[np.ndarray, TSNEParams]:
    """t-SNE of `x` (n, k) -> ((n, 2) float32, the resolved parameters)."""
    resolved = params.resolve(len(x))
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
