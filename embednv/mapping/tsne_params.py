"""t-SNE settings, and how each "auto" follows from the number of points.

Kept apart from `tsne` (which runs them) so that every backend can take them without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from embednv.errors import MapError
from embednv.runtime import usable_cpus

Auto = Literal["auto"]


@dataclass(frozen=True)
class TSNEParams:
    """t-SNE settings; fields set to "auto" are derived from the number of points n.

    perplexity: "auto" is 30, the effective number of neighbours each point attends to, or
        (n - 1) // 3 for fewer than 91 points. Raise it (50-100) for smoother, more global maps;
        lower it (10-20) to split small cohorts. At most (n - 1) / 3: each point looks at 3 x
        perplexity neighbours.
    multiscale: "auto" adds a second, wide kernel of perplexity n/100 when n <= multiscale_max_n
        and n/100 > perplexity (Kobak & Berens): it keeps related clusters near each other, so
        the map's large-scale layout means something. Turn off for speed.
    multiscale_max_n: the wide kernel's cost: it needs 3·n/100 neighbours per point, so its
        affinities grow as 0.03·n² (1.2e7 at 20k, 3e8 at 100k). Measured on 2 CPU cores: 10k
        points, 59 CPU-s for the whole t-SNE; 100k points, still building affinities after 23
        CPU-minutes when it passed 12 GiB RSS (single scale: 285 CPU-s, 1.3 GB). So "auto"
        stops at 20k, where it still costs about as much as the single-scale run of 100k;
        past it the default map is single-scale (Kobak & Berens' large-n recipe: PCA
        initialisation and learning rate n/12 keep the global layout). Force with --multiscale on.
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
    multiscale_max_n: int = 20_000
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
        if n < 4:
            raise ValueError(f"t-SNE needs at least 4 points, got {n}")
        # openTSNE and cuML give each point 3 x perplexity neighbours, and a point has n - 1.
        most = (n - 1) / 3
        if self.perplexity == "auto":
            perplexity = min(30.0, float((n - 1) // 3))  # a whole number, so 3 x it is exactly <= n - 1
        else:
            perplexity = float(self.perplexity)
            if not (math.isfinite(perplexity) and 0 < perplexity and 3 * perplexity <= n - 1):
                raise MapError(
                    f"--perplexity must be above 0 and at most {most:.4g} for {n} embeddings "
                    f"(3 x perplexity neighbours each), got {self.perplexity}"
                )
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
            n_jobs=usable_cpus() if self.n_jobs == "auto" else int(self.n_jobs),
            perplexities=(perplexity, wide) if multiscale and wide > perplexity else (perplexity,),
        )
