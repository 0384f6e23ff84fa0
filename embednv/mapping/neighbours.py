"""Nearest neighbours in the 50-d PCA space on CPU, with FAISS: placement's and the refinement's.

A million notes placed onto a 100k-note sample is 9e10 distances; every note's neighbours among
a million is 1e12. Exhaustive search (scikit-learn's brute force, FAISS's flat index) costs
minutes to an hour there on 2 cores, and openTSNE's Annoy search queries one point at a time
from Python (with it, the refinement of a 1M-note map took 943 s; scikit-learn placed 900k notes
in 316 s). So while base x queries is small
the search is exact (FAISS flat), and above `EXACT_MAX_PAIRS` it is FAISS's inverted-file index
(IVF: k-means lists, `PROBES` of them searched per query), approximate as Annoy is, each list
trained on a seeded sample. Distances are Euclidean (not squared), as openTSNE expects.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

EXACT_MAX_PAIRS = 2e10  # base rows x query rows searched exhaustively: ~1e12 flops at 50-d, under a minute
PROBES = 32  # inverted lists searched per query
TRAIN_PER_LIST = 64  # k-means sample per list (FAISS warns below 39)
QUERY_ROWS = 65_536  # queries per search call: bounds the (rows, k) result arrays


class Neighbours:
    """The rows of `base` searchable by nearness: exact while `base` x `n_queries` (the queries
    expected in all) is at most EXACT_MAX_PAIRS, else an IVF index trained once here."""

    def __init__(self, base: np.ndarray, n_queries: int, seed: int = 0) -> None:
        from embednv.runtime import import_faiss  # the project's one way in: a missing FAISS is one line

        faiss = self._faiss = import_faiss()
        self.base = np.ascontiguousarray(base, dtype=np.float32)
        n, dim = self.base.shape
        if n * n_queries <= EXACT_MAX_PAIRS:
            self.index = faiss.IndexFlatL2(dim)
        else:
            nlist = 2 ** round(math.log2(2 * math.sqrt(n)))  # 2,048 lists at 1M: ~500 rows each
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
            self.index.cp.seed = seed
            sample = np.random.default_rng(seed).choice(n, size=min(n, nlist * TRAIN_PER_LIST), replace=False)
            self.index.train(self.base[np.sort(sample)])
            self.index.nprobe = min(PROBES, nlist)
            log.debug("neighbours: IVF over %d rows, %d lists, %d probed", n, nlist, self.index.nprobe)
        self.index.add(self.base)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (q, k) float32, indices (q, k) int64), nearest first; k at most len(base)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self.base))
        distances = np.empty((len(queries), k), dtype=np.float32)
        indices = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), QUERY_ROWS):
            rows = slice(start, start + QUERY_ROWS)
            distances[rows], indices[rows] = self.index.search(queries[rows], k)
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):  # a query whose probed lists held fewer than k rows: searched exhaustively
            exact = self._faiss.IndexFlatL2(self.base.shape[1])
            exact.add(self.base)
            distances[short], indices[short] = exact.search(queries[short], k)
        return np.sqrt(np.maximum(distances, 0)), indices

    def search_for(self, k: int):
        """`queries -> (distances, indices)` of their k nearest rows."""
        return lambda queries: self.search(queries, k)


def neighbours_of_every_row(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows of `x`: (distances (n, k), indices (n, k)), itself left out."""
    distances, indices = Neighbours(x, len(x), seed).search(x, k + 1)
    return _without_self(distances, indices)


def _without_self(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's own index taken out (wherever ties put it), else its last neighbour."""
    own = indices == np.arange(len(indices))[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), indices.shape[1] - 1)
    keep = np.ones(indices.shape, dtype=bool)
    keep[np.arange(len(indices)), drop] = False
    width = indices.shape[1] - 1
    return distances[keep].reshape(-1, width), indices[keep].reshape(-1, width)
