"""Size and load time of map.html in headless Chromium: the canvas page against a plotly page.

    python bench/bench_map_html.py [--sizes 10000,100000] [--renderers canvas,plotly] [--repeats 3]
        [--clusters 30] [--json out.json] [--keep DIR]

`canvas` is what `embednv map` writes (embednv/mapping/render_html.py). `plotly` is the page it
wrote before (plotly Scattergl, one trace per cluster, plotly.js inlined, ids and labels as
hover data), rebuilt here from the same inputs as the baseline. The inputs are synthetic: n
points in `--clusters` Gaussian blobs, integer ids, one of 20 known labels per point, cluster
terms and exemplars, no note text (the default, `--show-text` off).

Load time: a fresh browser context per run, from `page.goto(file://...)` until the points are
on screen (canvas: the page's `embednvMap.ready` flag, set after its first draw; plotly: the
plot's WebGL canvas exists), then two animation frames so the frame is painted. Chromium runs
headless with --disable-gpu, as in the browser test; any network request is recorded as a
problem. Prints one JSON document on stdout (and writes it to --json); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import git_commit, machine_info, now

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
LABELS = [f"specialty {i:02d}" for i in range(20)]
READY = {
    "canvas": "() => window.embednvMap && window.embednvMap.ready",
    "plotly": "() => { const g = document.querySelector('.js-plotly-plot');"
    " return !!(g && g._fullLayout && g.querySelector('canvas.gl-canvas-context, canvas')); }",
}
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"


def synthetic(n: int, k: int, seed: int = 0) -> dict:
    import numpy as np

    from embednv.mapping.outputs import ClusterSummary
    from embednv.mapping.render import cluster_medians

    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, k, n)).astype(np.int32)  # cluster 0 first, as after renumbering
    labels = labels[rng.permutation(n)]
    y = (rng.standard_normal((k, 2)) * 30)[labels] + rng.standard_normal((n, 2)) * 2
    ids = list(range(10_000_000, 10_000_000 + n))
    known = [LABELS[(c * 3 + int(r)) % len(LABELS)] for c, r in zip(labels, rng.integers(0, 3, n))]
    words = [f"term{i}" for i in range(k * 10)]
    summary = ClusterSummary(
        sizes=np.bincount(labels, minlength=k),
        medians=cluster_medians(y, labels, k),
        exemplar_ids=[[ids[i] for i in np.flatnonzero(labels == c)[:5]] for c in range(k)],
        names=[f"{c}: {', '.join(words[c * 10 : c * 10 + 3])}" for c in range(k)],
        terms=[words[c * 10 : c * 10 + 10] for c in range(k)],
        composition=[[(LABELS[(c * 3) % 20], 10), (LABELS[(c * 3 + 1) % 20], 5)] for c in range(k)],
    )
    return {"ids": ids, "y": y, "labels": labels, "known": known, "summary": summary, "title": f"{n:,} notes"}


def write_canvas(path: Path, d: dict, budget: int | None = None) -> None:
    """The page `embednv map` writes; above `budget` points it draws the sample `drawn.drawn_rows` picks."""
    import numpy as np

    from embednv.mapping.drawn import drawn_rows
    from embednv.mapping.known_labels import KnownLabels
    from embednv.mapping.render_html import render_html

    s = d["summary"]
    exemplars = [np.flatnonzero(d["labels"] == c)[:5] for c in range(len(s.names))]
    drawn = drawn_rows(d["labels"], exemplars, budget) if budget else None
    render_html(
        path,
        d["ids"],
        d["y"],
        d["labels"],
        s.names,
        d["title"],
        KnownLabels.from_values(d["known"]),
        None,
        s,
        drawn=drawn,
    )


def write_plotly(path: Path, d: dict) -> None:
    """The map.html of embednv before the canvas page (render.py at commit 285cefd), without note text."""
    import html

    import numpy as np
    import plotly.graph_objects as go

    from embednv.mapping.render import palette

    y, labels, names = d["y"], d["labels"], d["summary"].names
    k, n = len(names), len(y)
    colours = palette(k)
    size = 6 if n <= 10_000 else 4 if n <= 100_000 else 2
    customdata = np.stack(
        [
            np.array([html.escape(str(v)) for v in d["ids"]], dtype=object),
            np.array([html.escape(str(v)) for v in d["known"]], dtype=object),
        ],
        axis=1,
    )
    template = "id %{customdata[0]}<br>cluster %s<br>label %{customdata[1]}"
    fig = go.Figure()
    for c in range(k):
        m = labels == c
        fig.add_trace(
            go.Scattergl(
                x=y[m, 0], y=y[m, 1], mode="markers", name=names[c],
                marker={"size": size, "color": colours[c], "opacity": 0.75}, customdata=customdata[m],
                hovertemplate=template.replace("%s", html.escape(names[c])) + "<extra></extra>",
            )
        )  # fmt: skip
    for c, (mx, my) in enumerate(d["summary"].medians):
        fig.add_annotation(x=mx, y=my, text=html.escape(names[c]), showarrow=False, font={"size": 11})
    fig.update_layout(
        title=d["title"], template="plotly_white", dragmode="pan", hovermode="closest",
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
    )  # fmt: skip
    config = {"scrollZoom": True, "displaylogo": False, "responsive": True}
    page = fig.to_html(
        include_plotlyjs=True, full_html=True, config=config, default_height="96vh", default_width="100%"
    )
    path.write_text(page, encoding="utf-8")


WRITERS = {"canvas": write_canvas, "plotly": write_plotly}


def load_times(browser, path: Path, renderer: str, repeats: int) -> tuple[list[float], list[float], list[str]]:
    """Seconds from goto to painted (measured here), ms from navigation start (the page's clock), errors."""
    walls, in_page, problems = [], [], []
    for _ in range(repeats):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)[:200]))
        page.on("console", lambda m: problems.append(m.text[:200]) if m.type == "error" else None)
        page.on(
            "request",
            lambda r: None if r.url.startswith(("file:", "data:", "blob:", "about:")) else problems.append(r.url),
        )
        start = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load", timeout=300_000)
        page.wait_for_function(READY[renderer], timeout=300_000, polling=50)
        painted_ms = page.evaluate(TWO_FRAMES)
        walls.append(time.perf_counter() - start)
        in_page.append(painted_ms)
        context.close()
    return walls, in_page, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of points")
    parser.add_argument("--renderers", default="canvas,plotly", help="comma-separated: canvas, plotly")
    parser.add_argument("--repeats", type=int, default=3, help="loads per page; the median is reported")
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the pages in this directory")
    parser.add_argument(
        "--point-budget",
        type=int,
        default=None,
        help="canvas: draw a sample above this many points (map --html-points)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    renderers = args.renderers.split(",")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-map-html-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        chromium = browser.version
        try:
            for n in sizes:
                data = synthetic(n, args.clusters)
                for renderer in renderers:
                    path = workdir / f"map-{renderer}-{n}.html"
                    start = time.perf_counter()
                    if renderer == "canvas":
                        write_canvas(path, data, args.point_budget)
                    else:
                        WRITERS[renderer](path, data)
                    write_s = time.perf_counter() - start
                    walls, in_page, problems = load_times(browser, path, renderer, args.repeats)
                    run = {
                        "renderer": renderer,
                        "n": n,
                        "drawn": min(n, args.point_budget or n) if renderer == "canvas" else n,
                        "bytes": path.stat().st_size,
                        "mib": round(path.stat().st_size / 2**20, 2),
                        "write_s": round(write_s, 2),
                        "load_s_median": round(statistics.median(walls), 3),
                        "load_s": [round(v, 3) for v in walls],
                        "painted_ms_from_navigation_median": round(statistics.median(in_page)),
                        "errors_or_requests": problems,
                    }
                    runs.append(run)
                    print(json.dumps(run), file=sys.stderr, flush=True)
                    if not args.keep:
                        path.unlink()
        finally:
            browser.close()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {
        "benchmark": "map.html size and load time",
        "command": "python bench/bench_map_html.py " + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "date": now(),
        "machine": machine_info(),
        "chromium": chromium,
        "clusters": args.clusters,
        "repeats": args.repeats,
        "point_budget": args.point_budget,
        "runs": runs,
    }
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
