"""Everything a map directory shows, from its points: terms, label metrics, the files, the pictures.

A fitted map (`run.run_map`), an updated one (`update.update_map`) and one with notes forgotten
(`forget.forget_from_map`) differ only in how they got their points, so all three publish
through `publish`: map.parquet, clusters.parquet/.md, metrics.json, map.png and map.html, each
written atomically. The manifest is the caller's, written last.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv import columns as cols
from embednv import directories as dirs
from embednv.mapping import outputs as out
from embednv.mapping.clusters import Clusters, Groups
from embednv.mapping.drawn import POINT_BUDGET
from embednv.runtime import peak_rss_mb, reset_peak_rss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notes:
    """Where the per-note annotations come from; every field None = none asked for."""

    texts: str | None = None  # file with the note text: cluster terms (and hovers with show_text)
    text_column: str = cols.DEFAULT_TEXT_COLUMN
    labels: str | None = None  # file with known labels
    labels_column: str | None = None
    show_text: bool = False

    def wanted(self) -> dict[str, list[str]]:
        """Annotation file -> the columns to read from it."""
        wanted: dict[str, list[str]] = {}
        if self.texts:
            wanted.setdefault(str(self.texts), []).append(self.text_column)
        if self.labels_column and self.labels:
            wanted.setdefault(str(self.labels), []).append(self.labels_column)
        return wanted


def publish(
    out_dir: Path,
    id_column: str,
    ids: pa.Array,
    y: np.ndarray,
    clusters: Clusters,
    groups: Groups,
    scores: dict,
    notes: Notes,
    timings: dict[str, float],
    terms: tuple[list, list] | None = None,
    seed: int = 0,
    html_points: int = POINT_BUDGET,
    peaks: dict[str, int | None] | None = None,
) -> tuple[dict, str, int]:
    """Write every map file but the manifest; returns (the scores with label agreement, how the PNG
    drew, how many points map.html draws).

    `terms` (cluster terms, group terms) are used as given when the note texts are not read
    (`forget` keeps a map's names: it has no texts to recompute them from). The note files are
    streamed (note_columns.py): the driver never holds every note's text. `peaks` gets each
    phase's peak resident memory (MiB).
    """
    from embednv.mapping import metrics, render, render_html
    from embednv.mapping.drawn import drawn_rows
    from embednv.mapping.note_columns import read_note_columns

    peaks = {} if peaks is None else peaks
    composition = group_composition = None
    top_terms, group_terms = terms if terms is not None else (None, None)
    with phase("annotations", timings, peaks):  # texts and labels streamed: memory does not grow with the text
        columns = read_note_columns(
            ids,
            id_column,
            clusters.labels,
            clusters.k,
            texts=(notes.texts, notes.text_column) if notes.texts else None,
            labels=(notes.labels, notes.labels_column) if notes.labels_column and notes.labels else None,
            show_text=notes.show_text,
            seed=seed,
        )
    known = columns.known
    if columns.term_counts is not None:
        with phase("terms", timings, peaks):
            top_terms = columns.term_counts.top()
            group_terms = columns.term_counts.top(parent=groups.parent)
    n = len(y)
    with phase("labels", timings, peaks):
        scores = {"n": n, "k": clusters.k, **scores}
        if known is not None:
            scores.update(metrics.label_agreement(known, clusters.labels))
            composition = metrics.label_composition(known, clusters.labels, clusters.k)
            group_composition = metrics.label_composition(known, groups.labels, groups.k)
    if scores.get("knn_preservation_10") is not None:
        log.info(
            "kNN preservation@10 %.3f, silhouette %s", scores["knn_preservation_10"], _fmt(scores.get("silhouette"))
        )
    if "nmi" in scores:
        log.info("against %r: NMI %.3f, ARI %.3f", notes.labels_column, scores["nmi"], scores["ari"])

    # A cluster's name is its number and top three terms; the number links it to clusters.md.
    names = [f"{c}: {', '.join(t[:3])}" if t else f"cluster {c}" for c, t in enumerate(top_terms or [[]] * clusters.k)]
    group_names = [
        f"group {g}: {', '.join(t[:3])}" if t else f"group {g}" for g, t in enumerate(group_terms or [[]] * groups.k)
    ]
    title = f"{n:,} notes, {clusters.k} clusters"
    id_list = ids.to_pylist()
    with phase("write", timings, peaks):
        out.write_map(out_dir / dirs.MAP_FILE, id_column, ids, y, clusters.labels, groups.labels)
        group_summary = _summary(y, groups, id_list, group_names, group_terms, group_composition)
        summary = _summary(y, clusters, id_list, names, top_terms, composition)
        out.write_clusters(
            out_dir / dirs.CLUSTERS_FILE, out_dir / dirs.CLUSTERS_MD, group_summary, summary, groups.parent, ids.type
        )
        dirs.OutputDir(str(out_dir)).write_json(dirs.METRICS_FILE, scores)
    with phase("render", timings, peaks):
        drawn = drawn_rows(clusters.labels, clusters.exemplars + groups.exemplars, html_points, seed)
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
                columns.hover,
                summary,
                groups=(group_summary, groups.parent),
                drawn=drawn,
            )
    return scores, png, n if drawn is None else len(drawn)


def kept_terms(out_dir: Path) -> tuple[list, list] | None:
    """The cluster and group terms of the map in `out_dir` (clusters.parquet), for a rewrite that
    reads no note text; None when it has none."""
    import pyarrow.parquet as pq

    path = out_dir / dirs.CLUSTERS_FILE
    if not path.is_file():
        return None
    rows = pq.read_table(path, columns=[cols.LEVEL, cols.CLUSTER, cols.TOP_TERMS]).to_pylist()
    levels = {
        level: [
            r[cols.TOP_TERMS]
            for r in sorted((r for r in rows if r[cols.LEVEL] == level), key=lambda r: r[cols.CLUSTER])
        ]
        for level in cols.LEVELS
    }
    if all(t is None for t in levels[cols.CLUSTER]):
        return None
    return levels[cols.CLUSTER], levels[cols.GROUP]


def recorded_notes(manifest: dict, show_text: bool | None = None) -> Notes:
    """The annotation files a map was made with (its manifest), those that can still be read."""
    from embednv.mapping.out_dir import _local

    inputs = manifest.get("inputs", {})

    def readable(source: str | None) -> str | None:
        path = _local(source)
        return source if source and (path is None or path.exists()) else None

    texts, labels = readable(inputs.get("texts")), readable(inputs.get("labels"))
    shown = manifest.get("render", {}).get("show_text", False) if show_text is None else show_text
    return Notes(
        texts, inputs.get("text_column") or "text", labels, inputs.get("labels_column") if labels else None, shown
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
def phase(name: str, timings: dict[str, float], peaks: dict[str, int | None]):
    """Time a phase and record this process's peak resident memory while it ran (MiB)."""
    reset_peak_rss()
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    peaks[name] = peak_rss_mb()
    log.info("%s: %.1f s", name, timings[name])


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
