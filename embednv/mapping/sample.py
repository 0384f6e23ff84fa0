"""Sample, then place: above `SAMPLE_ABOVE` notes the t-SNE is fitted on a sample and the rest placed.

t-SNE's cost and memory grow with n (kNN graph and affinities: ~3.2 KB a note on a GPU, see
docs/map.md), while what a map shows (clusters, their neighbourhoods) is already there in a
sample of 100k notes. So above `SAMPLE_ABOVE` notes the t-SNE runs on `SAMPLE_SIZE` of them,
stratified by k-means cluster (k-means runs on all n first) with a floor per cluster, so a small
cohort is never left out of the fit; every other note is placed onto that map with
`place.place`, the same placement as `embednv map --update`. Every note gets exactly one
position. UMAP's and cuML's maintainers recommend the same for large n.
"""

from __future__ import annotations

import numpy as np

# Full fits up to 200k notes: a single-scale openTSNE fit of 100k took 132 s on 2 quiet cores
# (630 s at a load average of 6 to 9), while a 10k fit plus placing the other 90k took 106 s in
# the same run (bench/map_update.py). The sampled map keeps fewer neighbours (kNN preservation
# 0.84x the full fit's at 100k, 0.80x on MTSamples): so only where a full fit stops being
# affordable, above 200k notes; there the fit is on 100k notes whatever n.
SAMPLE_ABOVE = 200_000
SAMPLE_SIZE = 100_000
SAMPLE_FLOOR = 200  # notes of each cluster in the sample at least (all of a smaller cluster)


def stratified_sample(labels: np.ndarray, size: int, seed: int, floor: int = SAMPLE_FLOOR) -> np.ndarray:
    """Sorted row indices: about `size` rows, each cluster's share of them, and at least `floor`
    rows (or all) of every cluster, the floor lowered so that floors take at most half the sample.
    Seeded, so the same inputs give the same sample."""
    n = len(labels)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    floor = max(1, min(floor, size // (2 * int(np.count_nonzero(counts)))))
    chosen = []
    for c, count in enumerate(counts):
        if count == 0:
            continue
        take = min(count, max(floor, int(round(size * count / n))))
        members = order[bounds[c] : bounds[c + 1]]
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))
