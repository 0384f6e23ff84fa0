"""cuml.neighbors.NearestNeighbors stand-in: scikit-learn's brute-force search behind cuML's arguments."""

from __future__ import annotations

import cuml


class NearestNeighbors:
    def __init__(self, *, n_neighbors: int = 5, output_type=None, **kwargs) -> None:
        cuml.CALLS.append(("NearestNeighbors", dict(n_neighbors=n_neighbors, output_type=output_type, **kwargs)))
        self.n_neighbors = n_neighbors

    def fit(self, x) -> NearestNeighbors:
        from sklearn.neighbors import NearestNeighbors as SkNN

        self._model = SkNN(n_neighbors=self.n_neighbors, algorithm="brute").fit(x)
        return self

    def kneighbors(self, x):
        return self._model.kneighbors(x)
