"""After sample-then-place: a short t-SNE optimisation of every note together, from the placed layout.

A placed note is put where its nearest fitted notes are; placed notes neither attract nor repel
each other, so with 90% of the notes placed most neighbourhoods on the map are only the fitted
notes' (kNN preservation 0.80x a full fit's on MTSamples). Starting from that layout, which already
holds the global structure, a plain t-SNE optimisation of all n notes (no early exaggeration, the
usual learning rate n/12) restores their own neighbourhoods in few iterations: openTSNE's
"embedding large data sets" guide uses the same start. A low perplexity keeps its affinities
cheap (3 x 10 neighbours a note) at a million notes.

Measured side by side against a full fit in docs/benchmarks.md ("Sample, then place"); the
values here were chosen on MTSamples and 100k synthetic notes (docs/map.md). CPU only
(openTSNE): cuML's t-SNE takes no starting layout, so a sampled map on cuML stays as placed.
"""

from __future__ import annotations

import numpy as np

REFINE_ITER = 150  # iterations over every note; 0 turns the refinement off
REFINE_PERPLEXITY = 10.0


def refine(
    x: np.ndarray,
    y: np.ndarray,
    n_iter: int = REFINE_ITER,
    perplexity: float = REFINE_PERPLEXITY,
    seed: int = 0,
    n_jobs: int = 1,
) -> np.ndarray:
    """(n, 2) float32: `y` (every note, fitted and placed) after `n_iter` t-SNE iterations on `x` (n, 50).

    The 3 x perplexity neighbours of every note come from `neighbours.py` (FAISS), not openTSNE's
    Annoy search, which queries one note at a time from Python.
    """
    from openTSNE import TSNEEmbedding, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    from embednv.mapping.neighbours import neighbours_of_every_row

    n = len(x)
    perplexity = min(perplexity, (n - 1) / 3)
    distances, indices = neighbours_of_every_row(x, min(n - 1, int(3 * perplexity)), seed)
    affinities = affinity.PerplexityBasedNN(
        perplexity=perplexity,
        knn_index=PrecomputedNeighbors(indices, distances.astype(np.float64)),
        n_jobs=n_jobs,
        random_state=seed,
    )
    embedding = TSNEEmbedding(
        np.array(y, dtype=np.float64), affinities, negative_gradient_method="fft", n_jobs=n_jobs, random_state=seed
    )
    embedding = embedding.optimize(n_iter=n_iter, exaggeration=1.0, momentum=0.8, learning_rate=max(200.0, n / 12))
    return np.asarray(embedding, dtype=np.float32)
