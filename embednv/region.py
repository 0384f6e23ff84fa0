"""A region of the map as a cohort: every note of map.parquet inside a box or polygon drawn on map.html.

map.html draws at most its point budget (`mapping/drawn.py`), but a region drawn on it is exported
as its shape in map coordinates (`region.json`), and here that shape is applied to every note of
map.parquet, drawn or not, streamed batch by batch. The tests are the page's own, in the same
float64 arithmetic on the same float32 coordinates, so a drawn point is in the cohort exactly when
the page selected it: a box keeps its edges; a lasso uses the even-odd rule (a point exactly on a
lasso's edge may fall either way, as on the page).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from embednv.columns import X, Y
from embednv.directories import MAP_FILE
from embednv.errors import CohortError
from embednv.io import filesystem_and_path

log = logging.getLogger(__name__)

SHAPES = ("box", "lasso")
MAX_VERTICES = 100_000  # a lasso drawn by hand has a few hundred; more is not a region from the page


@dataclass(frozen=True)
class Region:
    shape: str  # "box" (edges included) or "lasso" (even-odd polygon)
    polygon: np.ndarray  # (m, 2) float64, map coordinates

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (x[i], y[i]) inside, computed as map.html computes it."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        xa, ya = self.polygon.min(axis=0)
        xb, yb = self.polygon.max(axis=0)
        in_box = (x >= xa) & (x <= xb) & (y >= ya) & (y <= yb)
        if self.shape == "box":
            return in_box
        hit = np.zeros(len(x), dtype=bool)
        p = self.polygon
        with np.errstate(divide="ignore", invalid="ignore"):
            for a in range(len(p)):  # edge from vertex b = a - 1 to a, as the page's loop
                (xi, yi), (xj, yj) = p[a], p[a - 1]
                crosses = (yi > y) != (yj > y)
                hit ^= crosses & (x < ((xj - xi) * (y - yi)) / (yj - yi) + xi)
        return in_box & hit


def read_region(path: str) -> Region:
    """The region file map.html downloads: {"shape": "box"|"lasso", "polygon": [[x, y], ...]}."""
    filesystem, inner = filesystem_and_path(path)
    try:
        with filesystem.open_input_stream(inner) as f:
            doc = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CohortError(f"Region file not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CohortError(f"{path} is not a JSON region file: {e}") from None
    if not isinstance(doc, dict) or "polygon" not in doc:
        raise CohortError(f"{path} has no 'polygon': download the region from map.html's selection bar")
    shape = doc.get("shape", "lasso")
    if shape not in SHAPES:
        raise CohortError(f"{path}: invalid shape {shape!r}. Valid: {', '.join(SHAPES)}")
    vertices = doc["polygon"]
    if not isinstance(vertices, list) or not 3 <= len(vertices) <= MAX_VERTICES:
        count = len(vertices) if isinstance(vertices, list) else "no list of"
        raise CohortError(f"{path}: a polygon needs 3 to {MAX_VERTICES:,} [x, y] vertices, got {count}")
    for i, v in enumerate(vertices):
        ok = isinstance(v, list) and len(v) == 2
        if not ok or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in v):
            raise CohortError(f"{path}: vertex {i} is not a pair of finite numbers")
    return Region(shape, np.array(vertices, dtype=np.float64))


def select_region(map_dir: str, region: Region, id_column: str) -> pa.Table:
    """The ids of every note of map.parquet inside `region`, in map order, under the id's own name."""
    import pyarrow.parquet as pq

    filesystem, root = filesystem_and_path(map_dir)
    map_file = pq.ParquetFile(filesystem.open_input_file(f"{root.rstrip('/')}/{MAP_FILE}"))
    chosen = []
    for batch in map_file.iter_batches(batch_size=65_536, columns=[id_column, X, Y]):
        x = batch.column(X).to_numpy(zero_copy_only=False)
        y = batch.column(Y).to_numpy(zero_copy_only=False)
        chosen.append(batch.column(id_column).filter(pa.array(region.contains(x, y))))
    ids = pa.chunked_array(chosen, type=map_file.schema_arrow.field(id_column).type)
    log.info("region (%s, %d vertices): %d notes", region.shape, len(region.polygon), len(ids))
    return pa.table({id_column: ids})
