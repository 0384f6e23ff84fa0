"""`run_map`: embeddings directory in, map directory out. It only composes the phase modules.

shards --reader/pca--> (n, 50) --clusters--> labels
                              \\--tsne-----> (n, 2) --render--> map.png, map.html
texts  --terms--> cluster names;  labels --metrics--> NMI/ARI, composition
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from embednv import directories as dirs
from embednv.errors import MapError
from embednv.mapping import outputs as out
from embednv.mapping.drawn import POINT_BUDGET
from embednv.mapping.tsne_params import TSNEParams
from embednv.runtime import library_versions, peak_rss_mb, reset_peak_rss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapConfig:
    """What `embednv map` was asked to do; every field is recorded in the manifest."""

    emb_dir: str | Path  # directory of part-*.parquet embedding shards: a path or an s3://, gs://, file:// URI
    out_dir: Path  # MAP_DIR; must be empty or absent unless overwrite
    clusters: int | Literal["auto"] = "auto"  # k; "auto" = clamp(round(sqrt(n/2)), 2, 50)
    tsne: TSNEParams = field(default_factory=TSNEParams)
    backend: str = "auto"  # auto|cuml|cpu
    placement: str = "auto"  # auto|local|gpu-worker: where PCA, k-means and t-SNE run (placement.py)
    seed: int = 0  # one seed for k-means, t-SNE and metric samples: same inputs, same map
    texts: str | Path | None = None  # notes file (a path or URI) (Parquet/CSV/JSONL) with the id column and text
    text_column: str = "text"
    labels: str | Path | None = None  # file with known labels; defaults to `texts`
    labels_column: str | None = None  # e.g. "medical_specialty": NMI/ARI and composition
    show_text: bool = False  # put note text in map.html hovers (PHI: off unless asked)
    html_points: int = POINT_BUDGET  # map.html draws every note up to this many, else a sample (drawn.py)
    overwrite: bool = False  # replace map files already in out_dir
    n_components: int = 50  # PCA dims before k-means and t-SNE: denoises, and speeds up kNN
    batch_size: int | Literal["auto"] = "auto"  # rows per record batch; auto ~16 MiB of floats
    knn_sample: int = 5_000
    silhouette_sample: int = 5_000


@dataclass(frozen=True)
class MapResult:
    out_dir: Path
    n: int
    k: int
    backend: str
    metrics: dict
    timings: dict  # seconds per phase
    placement: str = "local"  # where the heavy phases ran: local or gpu-worker


def run_map(config: MapConfig) -> MapResult:
    """Build the map of `config.emb_dir` into `config.out_dir` and return what was done."""
    from embednv.mapping import annotations, metrics, render, render_html
    from embednv.mapping.checks import check_parameters
    from embednv.mapping.clusters import N_INIT, auto_clusters
    from embednv.mapping.compute import HeavyRequest, process
    from embednv.mapping.drawn import drawn_rows
    from embednv.mapping.note_columns import read_note_columns
    from embednv.mapping.out_dir import check_out, prepare
    from embednv.mapping.placement import Stage
    from embednv.mapping.reader import open_shards

    labels_path = config.labels or config.texts
    if config.labels_column and labels_path is None:
        raise MapError("--labels-column needs --labels or --texts (the file that holds the labels)")
    check_out(
        Path(config.out_dir), config.overwrite, config.emb_dir, {"--texts": config.texts, "--labels": config.labels}
    )
    shards = open_shards(config.emb_dir)
    # --clusters and --perplexity against n, from the shard footers: before a vector is read.
    check_parameters(config.emb_dir, shards.n_rows, config.clusters, config.tsne)
    wanted: dict[str, list[str]] = {}  # annotation file -> columns to read from it
    if config.texts:
        wanted.setdefault(str(config.texts), []).append(config.text_column)
    if config.labels_column:
        wanted.setdefault(str(labels_path), []).append(config.labels_column)
    for path, columns in wanted.items():
        annotations.check_columns(path, shards.id_column, columns)
    stage = Stage(config.placement, config.backend)  # may join Ray; fails here, before any output
    # PCA, k-means, t-SNE and the neighbour metrics, here or on a GPU worker: only small results come back.
    heavy = stage.run(HeavyRequest.of(config), shards)
    out_dir = prepare(Path(config.out_dir))  # only now: a map that fails leaves the directory as it was
    timings: dict[str, float] = dict(heavy.timings)
    peaks: dict[str, int | None] = dict(heavy.peak_rss_mb)  # measured where each phase ran
    ids, y, n, tsne_params = heavy.ids, heavy.y, len(heavy.y), heavy.tsne
    clusters, groups = heavy.clusters, heavy.groups

    top_terms = composition = group_terms = group_composition = None
    with _phase("annotations", timings, peaks):  # texts and labels streamed: memory does not grow with the notes' text
        notes = read_note_columns(
            ids,
            shards.id_column,
            clusters.labels,
            clusters.k,
            texts=(config.texts, config.text_column) if config.texts else None,
            labels=(labels_path, config.labels_column) if config.labels_column else None,
            show_text=config.show_text,
            seed=config.seed,
        )
    known = notes.known
    if notes.term_counts is not None:
        with _phase("terms", timings, peaks):
            top_terms = notes.term_counts.top()
            group_terms = notes.term_counts.top(parent=groups.parent)

    with _phase("labels", timings, peaks):
        scores = {"n": n, "k": clusters.k, **heavy.scores}
        if known is not None:
            scores.update(metrics.label_agreement(known, clusters.labels))
            composition = metrics.label_composition(known, clusters.labels, clusters.k)
            group_composition = metrics.label_composition(known, groups.labels, groups.k)
    log.info("kNN preservation@10 %.3f, silhouette %s", scores["knn_preservation_10"], _fmt(scores["silhouette"]))
    if "nmi" in scores:
        log.info("against %r: NMI %.3f, ARI %.3f", config.labels_column, scores["nmi"], scores["ari"])

    # A cluster's name is its number and top three terms; the number links it to clusters.md.
    names = [f"{c}: {', '.join(t[:3])}" if t else f"cluster {c}" for c, t in enumerate(top_terms or [[]] * clusters.k)]
    group_names = [
        f"group {g}: {', '.join(t[:3])}" if t else f"group {g}" for g, t in enumerate(group_terms or [[]] * groups.k)
    ]
    title = f"{n:,} notes, {clusters.k} clusters"
    id_list = ids.to_pylist()
    with _phase("write", timings, peaks):
        out.write_map(out_dir / dirs.MAP_FILE, shards.id_column, ids, y, clusters.labels, groups.labels)
        group_summary = _summary(y, groups, id_list, group_names, group_terms, group_composition)
        summary = _summary(y, clusters, id_list, names, top_terms, composition)
        out.write_clusters(
            out_dir / dirs.CLUSTERS_FILE, out_dir / dirs.CLUSTERS_MD, group_summary, summary, groups.parent, ids.type
        )
        out.write_json(out_dir / dirs.METRICS_FILE, scores)
    with _phase("render", timings, peaks):
        drawn = drawn_rows(clusters.labels, clusters.exemplars + groups.exemplars, config.html_points, config.seed)
        with out.atomic_path(out_dir / dirs.PNG_FILE) as tmp:
            png = render.render_png(tmp, y, clusters.labels, names, title)
        with out.atomic_path(out_dir / dirs.HTML_FILE) as tmp:
            render_html.render_html(
                tmp,
                id_list,
                y,
                clusters.labels,
                names,
                title,
                known,
                notes.hover,
                summary,
                groups=(group_summary, groups.parent),
                drawn=drawn,
            )

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
        "render": {
            "png": png,
            "html": "canvas 2-D, script inlined",
            "show_text": config.show_text,
            "html_point_budget": config.html_points,
            "html_points_drawn": n if drawn is None else len(drawn),  # above the budget: a sample (drawn.py)
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": peaks,  # per phase, in the process that ran it (heavy phases: placement's host)
        "versions": library_versions(),
    }
    out.write_json(out_dir / dirs.MANIFEST, manifest)
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


def _summary(y, level, id_list: list, names: list[str], top_terms, composition) -> out.ClusterSummary:
    """What clusters.parquet, clusters.md and the page say of one level (clusters or groups)."""
    from embednv.mapping import render

    return out.ClusterSummary(
        sizes=level.sizes,
        medians=render.cluster_medians(y, level.labels, level.k),
        exemplar_ids=[[id_list[i] for i in rows] for rows in level.exemplars],
        names=names,
        terms=top_terms,
        composition=composition,
    )


@contextmanager
def _phase(name: str, timings: dict[str, float], peaks: dict[str, int | None]):
    """Time a phase and record this process's peak resident memory while it ran (MiB)."""
    reset_peak_rss()
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    peaks[name] = peak_rss_mb()
    log.info("%s: %.1f s", name, timings[name])


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
