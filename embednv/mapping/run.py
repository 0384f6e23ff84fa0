"""`run_map`: embeddings directory in, map directory out. It only composes the phase modules.

shards --reader/pca--> (n, 50) --clusters--> labels
                              \\--tsne-----> (n, 2) --render--> map.png, map.html
texts  --terms--> cluster names;  labels --metrics--> NMI/ARI, composition
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from embednv import directories as dirs
from embednv.errors import MapError
from embednv.mapping.config import MapConfig, MapResult  # noqa: F401  (MapConfig: the public name, re-exported)
from embednv.mapping.registry import register_map
from embednv.runtime import library_versions

log = logging.getLogger(__name__)


def run_map(config: MapConfig) -> MapResult:
    """Build the map of `config.emb_dir` into `config.out_dir` and return what was done."""
    from embednv.mapping import annotations
    from embednv.mapping.checks import check_parameters
    from embednv.mapping.clusters import N_INIT, auto_clusters
    from embednv.mapping.compute import HeavyRequest, process
    from embednv.mapping.out_dir import check_out, prepare
    from embednv.mapping.placement import Stage
    from embednv.mapping.publish import Notes, publish
    from embednv.mapping.state import Basis, shard_hashes, write_basis, write_points
    from embednv.shards import open_shards

    if config.update:
        from embednv.mapping.update import update_map

        return update_map(config)
    labels_path = config.labels or config.texts
    if config.labels_column and labels_path is None:
        raise MapError("--labels-column needs --labels or --texts (the file that holds the labels)")
    check_out(
        Path(config.out_dir), config.overwrite, config.emb_dir, {"--texts": config.texts, "--labels": config.labels}
    )
    shards = open_shards(config.emb_dir)
    # --clusters and --perplexity against n, from the shard footers: before a vector is read.
    check_parameters(config.emb_dir, shards.n_rows, config.clusters, config.tsne)
    notes = Notes(config.texts, config.text_column, labels_path, config.labels_column, config.show_text)
    for path, columns in notes.wanted().items():
        annotations.check_columns(path, shards.id_column, columns)
    stage = Stage(config.placement, config.backend)  # may join Ray; fails here, before any output
    # PCA, k-means, t-SNE and the neighbour metrics, here or on a GPU worker: only small results come back.
    heavy = stage.run(HeavyRequest.of(config), shards)
    out_dir = prepare(Path(config.out_dir))  # only now: a map that fails leaves the directory as it was
    timings: dict[str, float] = dict(heavy.timings)
    peaks: dict[str, int | None] = dict(heavy.peak_rss_mb)  # measured where each phase ran
    ids, y, n, tsne_params = heavy.ids, heavy.y, len(heavy.y), heavy.tsne
    clusters, groups = heavy.clusters, heavy.groups
    scores, png, drawn = publish(
        out_dir, shards.id_column, ids, y, clusters, groups, heavy.scores, notes, timings,
        seed=config.seed, html_points=config.html_points, peaks=peaks,
    )  # fmt: skip
    # What `map --update` and `forget` need: the basis, the centroids, and each note's 50-d coordinates.
    write_basis(out_dir, Basis(heavy.pca_components, heavy.pca_mean, clusters.centroids, groups.parent))
    write_points(out_dir / dirs.POINTS_STATE, shards.id_column, ids, heavy.x, shard_hashes(shards, ids))

    manifest = {
        "kind": dirs.MAP,  # what this directory is; an embeddings directory's manifest says "embeddings"
        "tool": dirs.MAP_TOOL,
        "inputs": {
            "emb_dir": str(config.emb_dir),
            "shards": [p.rsplit("/", 1)[-1] for p in shards.paths],
            "id_column": shards.id_column,
            "dim": shards.dim,
            "texts": str(config.texts) if config.texts else None,
            "text_column": config.text_column if config.texts else None,
            "labels": str(labels_path) if config.labels_column else None,
            "labels_column": config.labels_column,
        },
        "n": n,
        "backend": heavy.backend,
        "placement": heavy.where,  # where PCA, k-means and t-SNE ran, and why (placement.py)
        "driver": process(),  # the process that wrote every file here
        "seed": config.seed,
        "pca": {
            "n_components": heavy.n_components,
            "batch_size": heavy.batch_size,
            "method": "streaming covariance, exact",
        },
        "clusters": {
            "k": clusters.k,
            "k_source": "auto: clamp(round(sqrt(n/2)), 2, 50)" if config.clusters == "auto" else "given",
            # Larger than k when repeated vectors left clusters empty (clusters.fit_clusters).
            "k_asked": auto_clusters(n) if config.clusters == "auto" else int(config.clusters),
            "auto_k_would_be": auto_clusters(n),
            "n_init": N_INIT,
            "groups": groups.k,
            "groups_method": "k-means of the cluster centroids weighted by size; auto = clamp(round(sqrt(k)), 2, 10)",
        },
        "tsne": {**asdict(tsne_params), "as_run": heavy.tsne_as_run},
        # Fitted on a stratified sample, the rest placed (sample.py); None = every note in the fit.
        "sampled": heavy.sampled,
        # `map --update` counts here the notes it placed since this fit (update.py).
        "since_fit": {"fitted_n": n, "placed": 0, "updates": []},
        "render": {
            "png": png,
            "html": "canvas 2-D, script inlined",
            "show_text": config.show_text,
            "html_point_budget": config.html_points,
            "html_points_drawn": drawn,  # above the budget: a sample (drawn.py)
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": peaks,  # per phase, in the process that ran it (heavy phases: placement's host)
        "versions": library_versions(),
    }
    dirs.OutputDir(str(out_dir)).write_json(dirs.MANIFEST, manifest)
    register_map(config.emb_dir, out_dir)
    log.info("map of %d notes written to %s in %.1f s", n, out_dir, sum(timings.values()))
    return MapResult(
        out_dir=out_dir,
        n=n,
        k=clusters.k,
        backend=heavy.backend,
        metrics=scores,
        timings=timings,
        placement=heavy.where["placement"],
    )
