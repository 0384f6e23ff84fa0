"""`map.html`: the interactive map as one offline file (no CDN, no fetch, nothing to install).

The page is a small hand-written 2-D canvas scatter (`assets/map.js`, `assets/map.css`, both
inlined), not plotly: at 100k points it is 4x smaller (2.4 MiB) and loads 7-10x faster (about a
second in headless Chromium); docs/map.md has the figures, `bench/bench_map_html.py` repeats them. The data travel as
one JSON document in a `<script type="application/json">` block: coordinates, cluster numbers and
label codes as base64 little-endian typed arrays, ids (and note text, only with `show_text`)
as JSON strings. Every `<`, `>` and `&` in that JSON is written as a \\u escape, so no id,
label, term or note can close the block; the page script puts strings on screen with
`textContent` only, and their bidi and control characters arrive as visible escapes
(`text_safety.visible`). A Content-Security-Policy admits only the inlined script and style (by
hash) and no connections, so the page cannot fetch anything even if a string did get through.

The page: pan (drag), zoom (wheel), hover (id, cluster, label, note text when shown); search by
id, cluster top term or known label; a cluster panel (size, top terms, exemplar ids, label mix)
from a click on a point or a legend entry; box and lasso selection with a CSV download of the
selected ids and a JSON download of the region (map coordinates, for `cohort --region`); colour
by cluster or by known label. Above the point budget (`drawn.py`) it draws a sample and says so;
search still finds a note not drawn and names its cluster. `window.embednvMap` is its scripting API
(tests drive it; a console user can too).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from embednv.mapping.known_labels import UNKNOWN, KnownLabels
from embednv.mapping.outputs import ClusterSummary
from embednv.mapping.render import cluster_medians, palette
from embednv.text_safety import visible

HOVER_TEXT_CHARS = 300  # note text shown on hover is cut to this many characters
MAX_LABEL_COLOURS = 40  # more distinct labels than this share one "other labels" colour
OTHER_LABELS_COLOUR, NO_LABEL_COLOUR = "#8c8c8c", "#c7c7c7"


def render_html(
    path: Path,
    ids: Sequence,
    y: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    title: str,
    known: KnownLabels | None = None,
    texts: Sequence[str | None] | None = None,
    summary: ClusterSummary | None = None,
    groups: tuple[ClusterSummary, np.ndarray] | None = None,
    drawn: np.ndarray | None = None,
) -> None:
    """Write the interactive map; `texts` (shown on hover) only when the user asked for them.

    `summary` (what clusters.parquet holds) fills the cluster panel; without it the panel shows
    sizes only. `groups` (the coarse level's summary and each cluster's parent) adds "colour by
    group": the coarse regions, named, with the clusters' names on top. `drawn` (rows, from
    `drawn.drawn_rows`) draws only those; the others' ids and clusters are carried for search.
    """
    page = page_html(map_payload(ids, y, labels, names, title, known, texts, summary, groups, drawn), title)
    Path(path).write_text(page, encoding="utf-8")


def map_payload(
    ids: Sequence,
    y: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    title: str,
    known: KnownLabels | None = None,
    texts: Sequence[str | None] | None = None,
    summary: ClusterSummary | None = None,
    groups: tuple[ClusterSummary, np.ndarray] | None = None,
    drawn: np.ndarray | None = None,
) -> dict:
    """The JSON document the page reads: everything it shows, nothing it does not."""
    k, n_total = len(names), len(y)
    labels = np.asarray(labels)
    sizes = summary.sizes if summary is not None else np.bincount(labels, minlength=k)
    medians = summary.medians if summary is not None else cluster_medians(y, labels, k)
    colours = palette(k)
    clusters = []
    for c in range(k):
        entry = {
            "name": _text(names[c]),
            "colour": colours[c],
            "size": int(sizes[c]),
            "median": [float(v) for v in medians[c]] if np.isfinite(medians[c]).all() else None,
            "terms": [_text(t) for t in summary.terms[c]] if summary is not None and summary.terms else [],
            "exemplars": [_text(i) for i in summary.exemplar_ids[c]] if summary is not None else [],
        }
        if summary is not None and summary.composition is not None:
            entry["labels"] = [[_text(lab), int(cnt)] for lab, cnt in summary.composition[c]]
        if groups is not None:
            entry["group"] = int(groups[1][c])
        clusters.append(entry)
    rows = np.arange(n_total) if drawn is None else np.asarray(drawn)
    undrawn = None
    if drawn is not None:  # the notes not drawn: ids and clusters only, so that search still finds them
        rest = np.setdiff1d(np.arange(n_total), rows)
        undrawn = {"ids": [_text(ids[i]) for i in rest], "cluster": _typed(labels[rest].astype(_uint_for(k)))}
    n = len(rows)
    return {
        "title": _text(title),
        "n": n,  # points drawn
        "n_total": n_total,  # notes on the map
        "point_size": 6 if n <= 10_000 else 4 if n <= 100_000 else 2,  # CSS pixels
        "xy": _typed(np.asarray(y, dtype=np.float32).reshape(n_total, 2)[rows]),  # x0, y0, x1, y1, ...
        "cluster": _typed(labels[rows].astype(_uint_for(k))),
        "ids": [_text(ids[i]) for i in rows],
        "undrawn": undrawn,
        "clusters": clusters,
        "labels": _label_payload(known, rows) if known is not None else None,
        "groups": _group_payload(*groups) if groups is not None else None,
        "texts": [_short_text(texts[i]) for i in rows] if texts is not None else None,
    }


def _text(value) -> str:
    """A string from the data as the page shows it: bidi and control characters as visible escapes
    (textContent would still let them reorder what is shown), tab and line breaks kept."""
    return visible(str(value), keep="\t\n\r")


def _group_payload(summary: ClusterSummary, parent: np.ndarray) -> list[dict]:
    """The coarse level: one colour group per group of clusters, named by its top terms."""
    colours = palette(60)[20:] + palette(60)[:20]  # away from the first clusters' colours
    return [
        {
            "name": _text(summary.names[g]),
            "colour": colours[g % 60],
            "size": int(summary.sizes[g]),
            "median": [float(v) for v in summary.medians[g]] if np.isfinite(summary.medians[g]).all() else None,
            "clusters": [int(c) for c in np.flatnonzero(parent == g)],
        }
        for g in range(len(summary.sizes))
    ]


def _label_payload(known: KnownLabels, rows: np.ndarray | None = None) -> dict:
    """Known labels as codes into `values` (most frequent first; code len(values) = no label) for the
    drawn `rows`, and the colour groups of "colour by label" with every note's count: one per frequent
    label, then the rest, then none."""
    per_code = np.bincount(known.codes[known.codes != UNKNOWN], minlength=len(known.names))
    counts: Counter = Counter()
    for name, count in zip(known.names, per_code.tolist()):
        if count:
            counts[_text(name)] += count
    values = [lab for lab, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    code_of = {lab: i for i, lab in enumerate(values)}
    lookup = np.array([code_of.get(_text(name), len(values)) for name in known.names] + [len(values)], dtype=np.int64)
    codes = lookup[np.where(known.codes == UNKNOWN, len(known.names), known.codes)]
    shown = min(len(values), MAX_LABEL_COLOURS)
    # Offset by 10: the strong shades of tab20b/tab20c first, so label colours differ from the
    # first clusters' colours and the two modes are not mistaken for each other.
    colours = palette(60)[10:] + palette(60)[:10]
    groups = [
        {"name": v, "value": v, "colour": colours[i % 60], "size": counts[v]} for i, v in enumerate(values[:shown])
    ]
    group_of_value = list(range(shown))
    rest = sum(counts[v] for v in values[shown:])
    if rest:
        group_of_value += [len(groups)] * (len(values) - shown)
        other = {"name": f"other labels ({len(values) - shown})", "value": None, "colour": OTHER_LABELS_COLOUR}
        groups.append({**other, "size": rest})
    unlabelled = int((codes == len(values)).sum())
    if unlabelled:
        group_of_value.append(len(groups))  # the "no label" code
        groups.append({"name": "no label", "value": None, "colour": NO_LABEL_COLOUR, "size": unlabelled})
    else:
        group_of_value.append(0)  # no point has the "no label" code; the slot only keeps the list whole
    return {
        "values": values,
        "codes": _typed((codes if rows is None else codes[rows]).astype(_uint_for(len(values) + 1))),
        "group_of_value": group_of_value,
        "groups": groups,
    }


def page_html(payload: dict, title: str) -> str:
    """The whole page: inlined style and script, the data block, and a CSP that admits only those."""
    script, style = _asset("map.js"), _asset("map.css")
    for name, text in (("map.js", script), ("map.css", style)):  # our own files: a guard, not escaping
        if "</" in text:
            raise ValueError(f"assets/{name} must not contain '</': it is inlined in the page")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src '{_sha256(script)}'",
            f"style-src '{_sha256(style)}'",
            "img-src 'none'",
            "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    return _PAGE.format(
        csp=csp,  # our own constant and base64 hashes: no quote or markup characters
        title=html.escape(_text(title)),
        style=style,
        data=script_json(payload),
        script=script,
    )


def script_json(obj) -> str:
    """JSON that is safe inside `<script type="application/json">`: no `<`, `>` or `&` at all."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _short_text(text: str | None) -> str:
    """Note text for the hover box: whitespace collapsed, cut to HOVER_TEXT_CHARS."""
    if not text:
        return ""
    short = visible(" ".join(str(text).split()))
    return short if len(short) <= HOVER_TEXT_CHARS else short[:HOVER_TEXT_CHARS] + "…"


def _typed(a: np.ndarray) -> dict:
    little = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": a.dtype.name, "b64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii")}


def _uint_for(count: int) -> type:
    return np.uint8 if count <= 256 else np.uint16 if count <= 65_536 else np.uint32


def _asset(name: str) -> str:
    return resources.files("embednv.mapping").joinpath("assets", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header id="bar">
  <h1 id="title"></h1>
  <span id="drawn-note" hidden></span>
  <input id="search" type="search" placeholder="search: id, term or label" autocomplete="off" spellcheck="false">
  <span id="match-count" aria-live="polite"></span>
  <label id="colour-label">colour by <select id="colour-by"><option value="cluster">cluster</option></select></label>
  <span class="modes">
    <button type="button" id="mode-pan" class="mode on" title="drag to pan, wheel to zoom">pan</button>
    <button type="button" id="mode-box" class="mode" title="drag a box to select">box</button>
    <button type="button" id="mode-lasso" class="mode" title="draw around points to select">lasso</button>
    <button type="button" id="reset-view" title="fit the whole map (or double-click)">reset</button>
  </span>
  <span id="selection" hidden>
    <span id="selection-count"></span>
    <button type="button" id="export-csv">download ids (CSV)</button>
    <button type="button" id="export-region" title="for embednv cohort MAP_DIR --region region.json">download region (JSON)</button>
    <button type="button" id="clear-selection">clear</button>
  </span>
</header>
<main>
  <div id="plot"><canvas id="points"></canvas><canvas id="overlay"></canvas><div id="tooltip" hidden></div></div>
  <aside id="side">
    <section id="panel" hidden>
      <button type="button" id="panel-close" title="close">×</button>
      <h2 id="panel-title"></h2>
      <p id="panel-group" hidden></p>
      <p><span id="panel-size"></span> notes (<span id="panel-share"></span>)</p>
      <h3>top terms</h3><p id="panel-terms"></p>
      <h3>exemplar ids <small>(nearest the centre; click to find)</small></h3><ol id="panel-exemplars"></ol>
      <div id="panel-labels-box"><h3>label mix</h3><ul id="panel-labels"></ul></div>
    </section>
    <section><h3 id="legend-title">clusters</h3><ul id="legend"></ul></section>
  </aside>
</main>
<script type="application/json" id="map-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
