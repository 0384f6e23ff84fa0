"""Remove notes from a map: every file of it that names them, each rewritten atomically.

`embednv forget EMB --ids F` calls `forget_from_map` for every map recorded in EMB's manifest
(`registry.py`). The notes leave map.parquet and `_points.parquet`; clusters.parquet and
clusters.md are rewritten with the remaining notes (sizes, positions, exemplars: with the saved
50-d coordinates the next-nearest notes become exemplars, without them a forgotten exemplar
is only dropped); metrics.json, map.png and map.html are redrawn. Nobody else moves: the
remaining notes keep their coordinates, clusters and groups. Terms are recomputed when the
map's `--texts` file can still be read (without the forgotten notes), else the map's are kept.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv import columns as cols
from embednv import directories as dirs
from embednv.errors import MapError

log = logging.getLogger(__name__)


def forget_from_map(map_dir: str, ids: set[str]) -> int:
    """Remove the notes whose id (compared as a string) is in `ids`; returns how many were on the map."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from embednv.mapping import metrics
    from embednv.mapping.drawn import POINT_BUDGET
    from embednv.mapping.out_dir import _local
    from embednv.mapping.publish import kept_terms, publish, recorded_notes
    from embednv.mapping.state import map_manifest, pca_matrix, read_basis, write_points

    out_dir = _local(map_dir)
    if out_dir is None:
        raise MapError(f"forget: {map_dir} is not a local map directory")
    manifest = map_manifest(out_dir, f"forget: {out_dir} holds no finished map")
    dirs.OutputDir(str(out_dir)).remove_stale_temporaries()  # what a killed forget was writing
    id_column = manifest["inputs"]["id_column"]
    wanted = pa.array(sorted(str(i) for i in ids), pa.string())
    table = pq.read_table(out_dir / dirs.MAP_FILE)
    drop = np.asarray(pc.is_in(pc.cast(table.column(id_column), pa.string()), value_set=wanted).fill_null(False))
    points_path = out_dir / dirs.POINTS_STATE
    points = pq.read_table(points_path) if points_path.is_file() else None
    points_drop = (
        np.asarray(pc.is_in(pc.cast(points.column(id_column), pa.string()), value_set=wanted).fill_null(False))
        if points is not None
        else np.zeros(0, bool)
    )
    count = int(drop.sum())
    if count == 0 and not points_drop.any():
        # Every file is clean. A forget killed after its last map file and before the manifest (written
        # last) removed this many: the manifest says so now.
        finished = int(manifest.get("n", table.num_rows)) - table.num_rows
        if finished > 0:
            _record(out_dir, manifest, finished, table.num_rows)
        return max(finished, 0)
    keep = pa.array(~drop)
    kept = table.filter(keep)
    kept_ids = kept.column(id_column).combine_chunks()
    y = np.column_stack([kept.column(cols.X).to_numpy(), kept.column(cols.Y).to_numpy()]).astype(np.float32)
    labels = kept.column(cols.CLUSTER).to_numpy().astype(np.int32)

    x = None
    if points is not None:
        points = points.filter(pa.array(~points_drop))
        at = pc.index_in(kept_ids, value_set=points.column(id_column).combine_chunks())
        if at.null_count == 0:
            x = pca_matrix(points)[np.asarray(at, dtype=np.int64)]
    old_scores = dirs.OutputDir(str(out_dir)).read_json(dirs.METRICS_FILE) or {}
    scores = {k: old_scores.get(k) for k in ("knn_preservation_10", "silhouette", "inertia", "pca_explained_variance")}
    if x is not None and (out_dir / dirs.PCA_STATE).is_file():
        from embednv.mapping.update import _levels

        clusters, groups = _levels(x, labels, read_basis(out_dir))
        scores["knn_preservation_10"] = metrics.knn_preservation(x, y)
        scores["silhouette"] = metrics.silhouette(x, labels)
        scores["inertia"] = clusters.inertia
    else:
        clusters, groups = _levels_without_state(out_dir, kept, labels, id_column)
    timings: dict[str, float] = {}
    notes = recorded_notes(manifest)
    terms = None if notes.texts else kept_terms(out_dir)
    budget = manifest.get("render", {}).get("html_point_budget", POINT_BUDGET)
    _, _, drawn = publish(
        out_dir, id_column, kept_ids, y, clusters, groups, scores, notes, timings, terms,
        seed=manifest.get("seed", 0), html_points=budget,
    )  # fmt: skip
    manifest.setdefault("render", {})["html_points_drawn"] = drawn
    if points is not None:
        write_points(
            points_path, id_column, points.column(id_column).combine_chunks(), pca_matrix(points), _hashes(points)
        )
    removed = max(count, int(manifest.get("n", table.num_rows)) - len(kept_ids))  # with a killed run's
    _record(out_dir, manifest, removed, len(kept_ids))
    return removed


def _record(out_dir: Path, manifest: dict, count: int, n: int) -> None:
    """The manifest, written last: the map's n and this forget, counts only."""

    manifest["n"] = n
    manifest["forgotten"] = [
        *manifest.get("forgotten", []),
        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "count": count},
    ]
    dirs.OutputDir(str(out_dir)).write_json(dirs.MANIFEST, manifest)
    log.info("forget: %d notes removed from the map in %s", count, out_dir)


def _levels_without_state(out_dir: Path, kept: pa.Table, labels: np.ndarray, id_column: str):
    """Clusters and groups from the files alone (a map made before `_points.parquet`): sizes from
    the remaining notes, exemplars the old ones that remain."""
    import pyarrow.parquet as pq

    from embednv.mapping.clusters import Clusters, Groups

    rows = pq.read_table(out_dir / dirs.CLUSTERS_FILE).to_pylist()
    row_of = {str(v): i for i, v in enumerate(kept.column(id_column).to_pylist())}
    levels = {}
    for level in cols.LEVELS:
        mine = sorted((r for r in rows if r[cols.LEVEL] == level), key=lambda r: r[cols.CLUSTER])
        exemplars = [
            np.array([row_of[str(e)] for e in r[cols.EXEMPLAR_IDS] if str(e) in row_of], np.int64) for r in mine
        ]
        levels[level] = (mine, exemplars)
    k = len(levels[cols.CLUSTER][0])
    parent = np.array([r[cols.PARENT] for r in levels[cols.CLUSTER][0]], dtype=np.int32)
    has_groups = cols.GROUP in kept.column_names
    group_labels = kept.column(cols.GROUP).to_numpy().astype(np.int32) if has_groups else parent[labels]
    g = len(levels[cols.GROUP][0])
    clusters = Clusters(
        labels=labels,
        centroids=np.zeros((k, 0), np.float32),
        inertia=float("nan"),
        sizes=np.bincount(labels, minlength=k).astype(np.int64),
        exemplars=levels[cols.CLUSTER][1],
    )
    groups = Groups(
        parent, group_labels, np.bincount(group_labels, minlength=g).astype(np.int64), levels[cols.GROUP][1]
    )
    return clusters, groups


def _hashes(points: pa.Table):
    from embednv.mapping.state import HASH_COLUMN

    return points.column(HASH_COLUMN).combine_chunks() if HASH_COLUMN in points.column_names else None
