"""`embednv map EMB --out MAP --update`: put a grown or changed corpus on an existing map without a refit.

The notes of EMB not on the map yet are placed (`place.py`); notes on the map whose embedding
changed (their text hash differs, or, for shards without one, their 50-d PCA coordinates moved)
are placed again; notes no longer in EMB leave. Every other note keeps its coordinates, bit for
bit, and its cluster. The PCA basis and the k-means centroids saved with the fit (`state.py`) are
reused, never refitted: a new note gets the cluster of its nearest centroid in the 50-d space.
map.parquet, clusters.*, metrics.json, map.png and map.html are rewritten (`publish.py`), and the
manifest counts the notes placed since the last full fit: past `REFIT_SHARE` of the map, the log
suggests a refit. It runs in this process: a projection of every vector onto the saved basis,
then the placement of the new notes (kNN on cuML, openTSNE's transform on CPU).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv import directories as dirs
from embednv.columns import CLUSTER, X, Y
from embednv.errors import MapError

log = logging.getLogger(__name__)

# Past this share of the map placed since its fit, the log suggests a full refit. Measured on
# MTSamples (2,357 distinct notes, MiniLM; 1,100 placed onto a map of the other 1,257: bench/
# map_update.py): placed notes land in their refit cluster as often as fitted ones do (0.65 vs
# 0.66), but keep fewer of their 10 nearest neighbours on the map (0.44 vs 0.58 on a refit). At
# 10% placed, the map's kNN preservation is then ~0.1 x 0.14 = 0.013 (about 2%) below a refit's.
REFIT_SHARE = 0.10
# Without a text hash, a note counts as changed when its projection moved more than this
# (float32 rounding of the same vector stays ~1e-7; a re-embedded text moves by ~1e-2 or more).
MOVED = 1e-4


def update_map(config):
    """Update the map in `config.out_dir` from `config.emb_dir`; returns `run.MapResult`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from embednv.mapping import annotations, metrics
    from embednv.mapping.backends import get_backend
    from embednv.mapping.compute import process
    from embednv.mapping.config import MapResult
    from embednv.mapping.drawn import POINT_BUDGET
    from embednv.mapping.place import nearest_centroid, place, resolve_method
    from embednv.mapping.publish import Notes, kept_terms, publish, recorded_notes
    from embednv.mapping.registry import register_map
    from embednv.mapping.state import (
        HASH_COLUMN,
        map_manifest,
        pca_matrix,
        read_basis,
        read_points,
        shard_hashes,
        write_points,
    )
    from embednv.shards import iter_batches, open_shards

    started = time.perf_counter()
    from embednv.mapping.out_dir import check_out

    out_dir = Path(config.out_dir)
    manifest = map_manifest(
        out_dir, f"--update needs a finished map in --out {out_dir}; make one first without --update"
    )
    # The same refusals as a fit (--out inside an input, an embeddings directory): it rewrites map files there.
    check_out(out_dir, True, config.emb_dir, {"--texts": config.texts, "--labels": config.labels})
    basis = read_basis(out_dir)
    points = read_points(out_dir / dirs.POINTS_STATE)
    shards = open_shards(config.emb_dir)
    id_column = manifest["inputs"]["id_column"]
    if shards.id_column != id_column:
        raise MapError(f"{config.emb_dir} has id column {shards.id_column!r}, the map {id_column!r}: refit the map")
    if shards.dim != basis.components.shape[1]:
        raise MapError(
            f"{config.emb_dir} holds {shards.dim}-d embeddings, the map was fitted on "
            f"{basis.components.shape[1]}-d ones (another model?): refit the map"
        )
    # Labels as the fit had them unless given again; terms from --texts, else the fit's are kept.
    recorded = recorded_notes(manifest, config.show_text)
    labels_path = config.labels or config.texts or recorded.labels
    labels_column = config.labels_column or recorded.labels_column
    notes = Notes(config.texts, config.text_column, labels_path, labels_column, config.show_text)
    for path, columns in notes.wanted().items():
        annotations.check_columns(path, id_column, columns)
    backend = get_backend(config.backend)
    method = resolve_method(config.place_method, backend.name)

    # The map as it is: the rows present in both map.parquet and _points.parquet (an update
    # killed between the two files leaves some notes in one only: those are placed again).
    old_map = pq.read_table(out_dir / dirs.MAP_FILE)
    old_ids = old_map.column(id_column).combine_chunks()
    at = pc.index_in(old_ids, value_set=points.column(id_column).combine_chunks())
    valid = np.asarray(at.is_valid())
    old_rows = np.flatnonzero(valid)
    point_rows = np.asarray(at.drop_null(), dtype=np.int64)
    old_ids = old_ids.take(pa.array(old_rows))
    old_x = pca_matrix(points)[point_rows]
    old_y = np.column_stack([old_map.column(c).to_numpy()[old_rows] for c in (X, Y)]).astype(np.float32)
    old_cluster = old_map.column(CLUSTER).to_numpy()[old_rows].astype(np.int32)
    old_hash = points.column(HASH_COLUMN).take(pa.array(point_rows)) if HASH_COLUMN in points.column_names else None

    # Every note of EMB, projected onto the saved basis, in shard order.
    id_parts, x_parts = [], []
    for batch_ids, vectors in iter_batches(shards, _batch_rows(shards.dim), with_ids=True):
        id_parts.append(batch_ids)
        x_parts.append(basis.project(vectors))
    ids = pa.concat_arrays(id_parts)
    x = np.concatenate(x_parts) if x_parts else np.empty((0, basis.components.shape[0]), np.float32)
    hashes = shard_hashes(shards, ids)
    where = np.asarray(pc.index_in(ids, value_set=old_ids).fill_null(-1), dtype=np.int64)  # row on the map, or -1
    on_map = where >= 0
    if hashes is not None and old_hash is not None:
        same = np.asarray(
            pc.equal(hashes.filter(pa.array(on_map)), old_hash.take(pa.array(where[on_map]))).fill_null(False)
        )
    else:
        same = np.abs(x[on_map] - old_x[where[on_map]]).max(axis=1) <= MOVED
    kept = np.zeros(len(ids), dtype=bool)
    kept[np.flatnonzero(on_map)[same]] = True
    new, changed = int((~on_map).sum()), int(on_map.sum() - same.sum())
    removed = len(old_ids) - int(on_map.sum())
    log.info("update: %d notes new, %d changed, %d unchanged, %d no longer in %s", new, changed, int(kept.sum()),
             removed, config.emb_dir)  # fmt: skip
    if not kept.any():
        raise MapError("no note of the map is still in the embeddings: nothing to place on; refit with --overwrite")

    timings: dict[str, float] = {}
    start = time.perf_counter()
    x[kept] = old_x[where[kept]]  # the very coordinates of the fit
    y = np.empty((len(ids), 2), dtype=np.float32)
    y[kept] = old_y[where[kept]]
    labels = np.empty(len(ids), dtype=np.int32)
    labels[kept] = old_cluster[where[kept]]
    moving = ~kept
    y[moving] = place(old_x[where[kept]], y[kept], x[moving], method, config.seed, _jobs(config), backend)
    labels[moving] = nearest_centroid(x[moving], basis.centroids)
    timings["place"] = time.perf_counter() - start
    log.info("place: %.1f s for %d notes (%s)", timings["place"], int(moving.sum()), method)

    clusters, groups = _levels(x, labels, basis)
    old_scores = dirs.OutputDir(str(out_dir)).read_json(dirs.METRICS_FILE) or {}
    scores = {
        "knn_preservation_10": metrics.knn_preservation(x, y, 10, config.knn_sample, config.seed),
        "silhouette": metrics.silhouette(x, labels, config.silhouette_sample, config.seed),
        "inertia": clusters.inertia,
        "pca_explained_variance": old_scores.get("pca_explained_variance"),
    }
    terms = None if config.texts else kept_terms(out_dir)
    budget = manifest.get("render", {}).get("html_point_budget", POINT_BUDGET)
    scores, png, drawn = publish(
        out_dir,
        id_column,
        ids,
        y,
        clusters,
        groups,
        scores,
        notes,
        timings,
        terms,
        seed=config.seed,
        html_points=budget,
    )
    write_points(out_dir / dirs.POINTS_STATE, id_column, ids, x, hashes)

    since = dict(manifest.get("since_fit") or {"fitted_n": manifest.get("n"), "placed": 0, "updates": []})
    since["placed"] = int(since.get("placed", 0)) + int(moving.sum())
    since["share"] = round(since["placed"] / len(ids), 6)
    since["refit_share"] = REFIT_SHARE
    since["updates"] = [
        *since.get("updates", []),
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "emb_dir": str(config.emb_dir),
            "new": new,
            "changed": changed,
            "unchanged": int(kept.sum()),
            "removed": removed,
            "method": method,
            "backend": backend.name,
            "seconds": round(time.perf_counter() - started, 3),
        },
    ]
    manifest.update(
        n=len(ids),
        since_fit=since,
        driver=process(),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    manifest["inputs"] = {**manifest["inputs"], "shards": [p.rsplit("/", 1)[-1] for p in shards.paths]}
    manifest["render"] = {
        **manifest.get("render", {}),
        "png": png,
        "show_text": config.show_text,
        "html_point_budget": budget,
        "html_points_drawn": drawn,
    }

    dirs.OutputDir(str(out_dir)).write_json(dirs.MANIFEST, manifest)
    register_map(config.emb_dir, out_dir)
    if since["share"] > REFIT_SHARE:
        log.warning(
            "%d of the map's %d notes (%.0f%%) were placed since its last full fit, over %.0f%%: refit it "
            "(`embednv map EMB --out MAP --overwrite`) so that the layout and the clusters reflect them",
            since["placed"], len(ids), 100 * since["share"], 100 * REFIT_SHARE,
        )  # fmt: skip
    return MapResult(out_dir=out_dir, n=len(ids), k=clusters.k, backend=backend.name, metrics=scores, timings=timings)


def _levels(x: np.ndarray, labels: np.ndarray, basis):
    """Clusters and groups of the updated points, with the fit's centroids and the fit's groups."""
    from embednv.mapping.clusters import N_EXEMPLARS, Clusters, Groups, nearest_to_centroids

    k = len(basis.centroids)
    inertia = float(((x - basis.centroids[labels]) ** 2).sum())
    clusters = Clusters(
        labels=labels,
        centroids=basis.centroids,
        inertia=inertia,
        sizes=np.bincount(labels, minlength=k).astype(np.int64),
        exemplars=nearest_to_centroids(x, labels, basis.centroids, N_EXEMPLARS),
    )
    parent = basis.parent.astype(np.int32)
    group_labels = parent[labels]
    g = int(parent.max()) + 1
    sizes = np.bincount(group_labels, minlength=g).astype(np.int64)
    centroids = np.stack([x[group_labels == c].mean(axis=0) if sizes[c] else np.zeros(x.shape[1]) for c in range(g)])
    groups = Groups(parent, group_labels, sizes, nearest_to_centroids(x, group_labels, centroids, N_EXEMPLARS))
    return clusters, groups


def _batch_rows(dim: int) -> int:
    from embednv.mapping.pca import auto_batch_size

    return auto_batch_size(dim)


def _jobs(config) -> int:
    from embednv.runtime import usable_cpus

    return usable_cpus() if config.tsne.n_jobs == "auto" else int(config.tsne.n_jobs)
