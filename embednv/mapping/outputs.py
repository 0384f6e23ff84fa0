"""The table and text files of a map directory, each written atomically (temp file, then rename).

    map.parquet       one row per note: <id column>, x, y, cluster, group (the coarse level)
    clusters.parquet  one row per cluster of each level (`level` "group" or "cluster"; a cluster's
                      `parent` is its group): size, map position, top terms, exemplar ids, labels
    clusters.md       the same for people: the groups, then the clusters with their group
    metrics.json, _manifest.json

`_manifest.json` is written last by `run.run_map`, so its presence means the directory is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv.columns import (
    CLUSTER,
    EXEMPLAR_IDS,
    FRACTION,
    GROUP,
    LEVEL,
    MAP_X,
    MAP_Y,
    NAME,
    PARENT,
    SIZE,
    TOP_LABELS,
    TOP_TERMS,
    X,
    Y,
)
from embednv.io import atomic_path
from embednv.text_safety import markdown_text


def write_map(
    path: Path, id_column: str, ids: pa.Array, y: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
) -> None:
    import pyarrow.parquet as pq

    table = pa.table(
        {
            id_column: ids,
            X: y[:, 0].astype(np.float32),
            Y: y[:, 1].astype(np.float32),
            CLUSTER: labels.astype(np.int32),
        }
    )
    if groups is not None:
        table = table.append_column(GROUP, pa.array(groups.astype(np.int32)))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass(frozen=True)
class ClusterSummary:
    """Everything reported per cluster of one level; optional parts are None when their input was not given."""

    sizes: np.ndarray  # (k,)
    medians: np.ndarray  # (k, 2) position on the map
    exemplar_ids: list[list]  # ids of the notes nearest each centroid, nearest first
    names: list[str]
    terms: list[list[str]] | None
    composition: list[list[tuple[str, int]]] | None  # top known labels with counts


def write_clusters(
    parquet: Path,
    markdown: Path,
    groups: ClusterSummary,
    clusters: ClusterSummary,
    parent: np.ndarray,
    id_type: pa.DataType,
) -> None:
    import pyarrow.parquet as pq

    table = pa.concat_tables(
        [
            _level_table(GROUP, groups, None, id_type),
            _level_table(CLUSTER, clusters, parent, id_type),
        ]
    )
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    with atomic_path(markdown) as tmp:
        tmp.write_text(_markdown(groups, clusters, parent))


def _level_table(level: str, s: ClusterSummary, parent: np.ndarray | None, id_type: pa.DataType) -> pa.Table:
    k = len(s.sizes)
    label_count = pa.struct([("label", pa.string()), ("count", pa.int64())])
    columns = {
        LEVEL: pa.array([level] * k, pa.string()),
        CLUSTER: pa.array(np.arange(k, dtype=np.int32)),
        PARENT: pa.array(parent if parent is not None else [None] * k, pa.int32()),
        SIZE: pa.array(s.sizes.astype(np.int64)),
        FRACTION: pa.array(s.sizes / max(s.sizes.sum(), 1)),
        NAME: pa.array(s.names, pa.string()),
        MAP_X: pa.array(s.medians[:, 0].astype(np.float32)),
        MAP_Y: pa.array(s.medians[:, 1].astype(np.float32)),
        EXEMPLAR_IDS: pa.array(s.exemplar_ids, pa.list_(id_type)),
        TOP_TERMS: pa.array(s.terms if s.terms is not None else [None] * k, pa.list_(pa.string())),
        TOP_LABELS: pa.array(
            [[{"label": lab, "count": cnt} for lab, cnt in comp] for comp in s.composition]
            if s.composition is not None
            else [None] * k,
            pa.list_(label_count),
        ),
    }
    return pa.table(columns)


def _markdown(groups: ClusterSummary, clusters: ClusterSummary, parent: np.ndarray) -> str:
    total = max(int(clusters.sizes.sum()), 1)
    members = [[c for c in range(len(parent)) if parent[c] == g] for g in range(len(groups.sizes))]
    return (
        "\n".join(
            [
                f"# Clusters ({len(groups.sizes)} groups, {len(clusters.sizes)} clusters, {total} notes)",
                "",
                "## Groups",
                "",
                *_table(groups, "group", total, extra=("clusters", [", ".join(map(str, m)) for m in members])),
                "",
                "## Clusters",
                "",
                *_table(clusters, "cluster", total, extra=("group", [str(g) for g in parent])),
            ]
        )
        + "\n"
    )


def _table(s: ClusterSummary, what: str, total: int, extra: tuple[str, list[str]]) -> list[str]:
    head = [what, "size", extra[0], "exemplar ids"]
    head[3:3] = ["top terms"] if s.terms is not None else []
    head += ["top labels"] if s.composition is not None else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, size in enumerate(s.sizes):
        # Our own numbers go in as they are; every value from the data (terms, ids, labels) is escaped.
        row = [str(c), f"{size} ({100 * size / total:.1f}%)", extra[1][c]]
        if s.terms is not None:
            row.append(", ".join(markdown_cell(t) for t in s.terms[c]))
        row.append(", ".join(markdown_cell(i) for i in s.exemplar_ids[c]))
        if s.composition is not None:
            row.append(
                ", ".join(f"{markdown_cell(lab)} {100 * cnt / max(size, 1):.0f}%" for lab, cnt in s.composition[c])
            )
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown_cell(text: str) -> str:
    """Untrusted text (ids, terms, labels) as one Markdown table cell: no row or column breaks, and
    nothing a Markdown viewer renders as a link, an image or HTML (`text_safety.markdown_text`)."""
    return markdown_text(text)
