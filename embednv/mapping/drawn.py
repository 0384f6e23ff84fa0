"""Which notes map.html draws: all of them up to a point budget, above it a sample that keeps the map's shape.

The page draws every point into a canvas buffer; `bench/bench_map_html.py` measured 1,000,000
points at 23 MiB and 2.9 s to load (a redraw on pan or zoom 0.25 to 0.35 s) on a busy 2-core
machine, and both grow linearly: so 1,000,000 is the default budget. Above it the page draws a
sample in which every cluster keeps its share of the points (largest remainders, so the quotas
add up to the budget exactly) and every exemplar of a cluster or a group is drawn; the others are
drawn at random with the map's seed. The notes not drawn are not lost: the page carries their ids
and clusters for search, `map.parquet` keeps every note, and a region drawn on the page is
exported as a polygon that `embednv cohort MAP --region` applies to every note.
"""

from __future__ import annotations

import logging

import numpy as np

from embednv.errors import ConfigError

log = logging.getLogger(__name__)

POINT_BUDGET = 1_000_000


def drawn_rows(labels: np.ndarray, exemplars: list[np.ndarray], budget: int, seed: int = 0) -> np.ndarray | None:
    """Sorted row indices to draw, or None when all `len(labels)` rows fit in `budget`.

    `labels` (n,) is each row's cluster; `exemplars` are rows that must be drawn (they may repeat).
    The result holds `budget` rows, or more only when there are more exemplars than that.
    """
    n = len(labels)
    if n <= budget:
        return None
    if budget < 1:
        raise ConfigError(f"The point budget must be at least 1, got {budget}")
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    must = np.unique(np.concatenate([np.asarray(e, dtype=np.int64) for e in exemplars] or [np.zeros(0, np.int64)]))
    must_per = np.bincount(labels[must], minlength=k)
    share = budget * sizes / n
    quota = np.floor(share).astype(np.int64)
    left = budget - int(quota.sum())
    quota[np.argsort(-(share - quota), kind="stable")[:left]] += 1  # largest remainders
    quota = np.clip(np.maximum(quota, must_per), 0, sizes)
    for _ in range(int(quota.sum()) - budget):  # exemplars raised a small cluster: the largest spare pays
        slack = quota - must_per
        if slack.max() <= 0:
            break
        quota[int(np.argmax(slack))] -= 1
    rng = np.random.default_rng(seed)
    is_must = np.zeros(n, dtype=bool)
    is_must[must] = True
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    chosen = [must]
    for c in range(k):
        members = order[bounds[c] : bounds[c + 1]]
        free = members[~is_must[members]]
        extra = int(quota[c] - must_per[c])
        if extra > 0:
            chosen.append(rng.choice(free, size=extra, replace=False))
    rows = np.sort(np.concatenate(chosen))
    log.info("map.html: drawing %d of %d notes (point budget %d)", len(rows), n, budget)
    return rows
