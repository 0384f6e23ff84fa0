"""cuml.cluster.KMeans stand-in: scikit-learn's KMeans behind cuML's attribute names."""

from __future__ import annotations

import numpy as np

import cuml


class KMeans:
    def __init__(self, *, n_clusters: int = 8, n_init="auto", random_state=None, output_type=None, **kwargs) -> None:
        cuml.CALLS.append(
            (
                "KMeans",
                dict(
                    n_clusters=n_clusters, n_init=n_init, random_state=random_state, output_type=output_type, **kwargs
                ),
            )
        )
        self.n_clusters, self.n_init, self.random_state = n_clusters, n_init, random_state

    def fit(self, x) -> KMeans:
        from sklearn.cluster import KMeans as SkKMeans

        model = SkKMeans(n_clusters=self.n_clusters, n_init=self.n_init, random_state=self.random_state).fit(x)
        self.labels_ = model.labels_.astype(np.int32)
        self.cluster_centers_ = model.cluster_centers_.astype(np.float32)
        self.inertia_ = float(model.inertia_)
        return self
