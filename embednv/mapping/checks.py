"""What the map refuses, and why, before the expensive phases spend minutes on it.

Some inputs make PCA, k-means or t-SNE fail late, say nothing, or crash the process (openTSNE
segfaults when every point starts at the same place). Each is refused in one line (MapError):

    parameters out of range for n   --clusters, --perplexity: from the shard footers, before a vector is read
    rows that are no direction      NaN, inf or all-zero vectors: counted and named during PCA's first pass
    nothing to map                  every vector the same (to float32 precision): from the covariance,
                                    before the eigensolver

They run inside `compute.compute`, so a map on a GPU worker gets them too; `run_map` also calls
`check_parameters` before it writes anything. Rows are refused, not dropped: a map that quietly
leaves notes out would make cohorts that quietly miss them.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pyarrow as pa

from embednv.errors import MapError
from embednv.mapping.tsne_params import TSNEParams

MIN_POINTS = 10  # below this, clusters and neighbourhoods say nothing
# Unit vectors whose RMS distance to their mean is below 1e-4 (total variance 1e-8) are one
# direction as far as float32 can tell: a float32 cosine resolves ~6e-8, that is distances of
# ~3e-4. A templated note embedded again and again lands here; PCA of it is rounding noise.
MIN_TOTAL_VARIANCE = 1e-8
SHOWN_IDS = 5  # ids named in an error; the count says how many more


def check_parameters(where: str, n: int, clusters: int | Literal["auto"], tsne: TSNEParams) -> TSNEParams:
    """Fail now if the `n` embeddings in `where` cannot be mapped with these settings; returns the
    t-SNE settings resolved for n."""
    if n < MIN_POINTS:
        raise MapError(f"{where} holds {n} embeddings; a map needs at least {MIN_POINTS}")
    if clusters != "auto" and not 2 <= int(clusters) <= n - 1:
        # n clusters would put every note alone, and the silhouette needs one cluster with two.
        raise MapError(f"--clusters must be in 2..{n - 1} (fewer than the {n} embeddings), got {clusters}")
    return tsne.resolve(n)


class RowCheck:
    """Rows that are no direction (NaN or inf anywhere, or all zeros), tallied batch by batch.

    `add` is fed the unit vectors of `reader.iter_batches`: a NaN or inf in a row has made the
    whole row non-finite there, and a zero row stays zero.
    """

    KINDS = ("NaN or inf", "all zeros")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.ids: dict[str, list] = {kind: [] for kind in self.KINDS}

    @property
    def clean(self) -> bool:
        return not any(self.counts.values())

    def add(self, ids: pa.Array, vectors: np.ndarray) -> bool:
        """Tally the bad rows of one batch `(b, dim)`; True while every row seen so far is usable."""
        finite = np.isfinite(vectors).all(axis=1)
        zero = finite & ~vectors.any(axis=1)
        for kind, bad in zip(self.KINDS, (~finite, zero)):
            rows = np.flatnonzero(bad)
            if len(rows):
                self.counts[kind] += len(rows)
                room = SHOWN_IDS - len(self.ids[kind])
                self.ids[kind] += ids.take(pa.array(rows[:room])).to_pylist() if room > 0 else []
        return self.clean

    def raise_if_any(self, where: str, id_column: str, n: int) -> None:
        """One line naming how many rows of each kind, and the first few of their ids."""
        if self.clean:
            return
        parts = []
        for kind in self.KINDS:
            if self.counts[kind]:
                more = self.counts[kind] - len(self.ids[kind])
                shown = ", ".join(map(repr, self.ids[kind])) + (f" and {more:,} more" if more else "")
                parts.append(f"{self.counts[kind]:,} {kind} ({id_column} {shown})")
        raise MapError(
            f"{where}: {sum(self.counts.values()):,} of {n:,} embeddings are not directions: {'; '.join(parts)}; "
            "a map needs every vector finite and non-zero: re-embed those notes or leave them out"
        )


def check_spread(total_variance: float, n: int) -> None:
    """Refuse embeddings that are all one vector: their map would be rounding noise (or a crash)."""
    if not total_variance >= MIN_TOTAL_VARIANCE:  # `not >=` also catches NaN
        spread = math.sqrt(max(total_variance, 0.0))
        raise MapError(
            f"all {n:,} embeddings are the same vector (RMS distance to their mean {spread:.1g}, under "
            f"{math.sqrt(MIN_TOTAL_VARIANCE):g}, which float32 cannot tell from equal): nothing to map; "
            "are the notes one template?"
        )
