"""Index settings, and how each "auto" follows from the number of vectors and their width.

Kept apart from `build` (which runs them) so the CLI can validate `--kind` before anything
heavy is imported, and so every choice and the measurement behind it is in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

KINDS = ("auto", "flat", "ivf", "ivf-fp16", "ivf-sq8")
# kind -> the FAISS index_factory string; "{nlist}" is filled in by resolve().
FACTORIES = {"flat": "Flat", "ivf": "IVF{nlist},Flat", "ivf-fp16": "IVF{nlist},SQfp16", "ivf-sq8": "IVF{nlist},SQ8"}
# Below this many stored floats (n x dim) an exact flat index is chosen: one query reads every
# vector, measured here at 40 ms for 50k x 384 (19M floats) on a loaded 2-core machine, so
# 10M floats (26k x 384, 2.4k x 4,096) keeps exact search well under the 50 ms goal.
FLAT_MAX_FLOATS = 10_000_000
# Above this many bytes of float32 vectors, "auto" stores them as float16 (2x smaller, recall as
# whole vectors' in bench/cohort_index.py) instead of whole: the index is mapped from disk at query
# time, but it is built in memory.
IVF_FLAT_MAX_BYTES = 8 << 30
NLIST_MIN, NLIST_MAX = 16, 65_536


@dataclass(frozen=True)
class IndexParams:
    """What `embednv index` builds; fields left "auto"/None are derived from n and dim by `resolve`.

    kind: "auto" is "flat" (exact, every vector scanned) while n x dim <= FLAT_MAX_FLOATS, then
        "ivf" (inverted lists of whole vectors: cosines exact, only the lists probed are read),
        then "ivf-fp16" once the vectors pass IVF_FLAT_MAX_BYTES (float16, 2x smaller; cosines
        to about 1e-3). "ivf-sq8" (8-bit codes, 4x smaller) is never automatic: on clustered
        vectors its recall@50 stops near 0.96 however many lists are probed (docs/benchmarks.md);
        choose it when memory at build time is short. Force "flat" when every answer must be exact.
    nlist: inverted lists. None is the power of two nearest sqrt(n) (1,024 at 1M): k-means on
        64 sample vectors per list then costs seconds, and each list holds ~sqrt(n) vectors,
        so a query reads nprobe x sqrt(n) of them. Raise it (to 4-16 x sqrt(n)) for faster
        queries on large n if a longer build is fine.
    target_recall: the build probes the new index with `calibration_queries` vectors drawn from
        the corpus and keeps the smallest nprobe whose recall@k against an exact scan reaches
        this (the acceptance goal, 0.95, plus a margin for the estimate's error and for text
        queries, which are not corpus vectors).
    k: the neighbours counted in the calibration; `cohort` scales nprobe up for a larger --k.
    train_per_list: k-means sample size per list (FAISS warns below 39; 64 costs little more).
    seed: the training sample, the calibration queries and k-means all follow it.
    """

    kind: str = "auto"
    nlist: int | None = None
    target_recall: float = 0.97
    k: int = 50
    calibration_queries: int = 200
    train_per_list: int = 64
    seed: int = 0

    def resolve(self, n: int, dim: int) -> IndexParams:
        """A copy with kind and nlist fixed for n vectors of width dim."""
        if self.kind not in KINDS:
            raise ValueError(f"Invalid index kind {self.kind!r}. Valid: {', '.join(KINDS)}")
        kind = self.kind
        if kind == "auto":
            if n * dim <= FLAT_MAX_FLOATS:
                kind = "flat"
            else:
                kind = "ivf" if n * dim * 4 <= IVF_FLAT_MAX_BYTES else "ivf-fp16"
        if kind == "flat":
            return replace(self, kind=kind, nlist=None)
        nlist = self.nlist or 2 ** round(math.log2(max(math.sqrt(n), 1)))
        nlist = max(NLIST_MIN, min(NLIST_MAX, nlist))
        # Every list needs training vectors: a small corpus gets fewer lists, not an untrained index.
        nlist = min(nlist, max(1, n // 39))
        return replace(self, kind=kind, nlist=nlist)

    @property
    def factory(self) -> str:
        """The FAISS index_factory string of a resolved kind."""
        return FACTORIES[self.kind].format(nlist=self.nlist)

    def train_rows(self, n: int) -> int:
        return min(n, (self.nlist or 0) * self.train_per_list)


def probes_for_k(nprobe: int, nlist: int, k: int, calibrated_k: int) -> int:
    """nprobe for a query asking for k neighbours: the calibrated value, times k/calibrated_k when larger.

    More neighbours lie in more lists; scaling nprobe with k keeps recall near the calibrated one
    at the cost of proportionally more vectors read.
    """
    return min(nlist, nprobe * max(1, math.ceil(k / calibrated_k)))
