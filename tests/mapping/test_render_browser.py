"""Open map.html in a real headless Chromium and use it: no errors, no network, points drawn, hover,
search, the cluster panel, box and lasso selection with the CSV download, colour by label, and
hostile strings that stay text."""

import csv
import io
import json
import os
import shutil
from contextlib import contextmanager

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from matplotlib.path import Path as Polygon
from typer.testing import CliRunner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@contextmanager
def opened(browser, html_path):
    """The page, loaded and drawn; afterwards: no console error, no request beyond the file, no dialog."""
    errors, requests, dialogs = [], [], []
    context = browser.new_context(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(html_path.as_uri(), wait_until="load")
        page.wait_for_function("() => window.embednvMap && window.embednvMap.ready")
        page.evaluate(TWO_FRAMES)
        yield page
    finally:
        context.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))] == []
    assert dialogs == []


def painted(page) -> bytes:
    page.evaluate(TWO_FRAMES)
    return page.locator("#plot").screenshot()  # the plot only: legend swatches would count too


def _colour_pixels(png: bytes, colours: list[str], opacity: float = 0.75, tol: int = 30) -> list[int]:
    """Pixels of each colour as drawn: markers at `opacity` over the white background."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)  # (H, W, 3)
    counts = []
    for hex_colour in colours:
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        drawn = opacity * rgb + (1 - opacity) * 255
        counts.append(int((np.abs(img - drawn).sum(axis=2) < tol).sum()))
    return counts


@pytest.fixture(scope="module")
def planted_page(planted_map):
    """map.html of the planted map with the inputs it was made from, as the page should show them."""
    out = planted_map["config"].out_dir
    table = pq.read_table(out / "map.parquet").to_pandas()
    notes = pq.read_table(planted_map["notes"]).to_pandas().set_index("note_id")
    table["label"] = notes.loc[table.note_id, "medical_specialty"].to_numpy()
    clusters = pq.read_table(out / "clusters.parquet", filters=[("level", "=", "cluster")]).to_pylist()
    return {"html": out / "map.html", "table": table, "clusters": clusters}


def test_map_html_renders_offline_with_points_and_hover(planted_page, browser):
    from embednv.mapping.render import palette

    table = planted_page["table"]
    row = table[table.cluster == 0].iloc[0]
    with opened(browser, planted_page["html"]) as page:
        screenshot = painted(page)
        if os.environ.get("EMBEDNV_SCREENSHOT"):  # to look at it: EMBEDNV_SCREENSHOT=/tmp/map.png
            page.screenshot(path=os.environ["EMBEDNV_SCREENSHOT"])
        page.mouse.move(*page.evaluate("([x, y]) => embednvMap.toScreen(x, y)", [float(row.x), float(row.y)]))
        page.wait_for_selector("#tooltip:not([hidden])", timeout=5000)
        hover = page.inner_text("#tooltip").splitlines()
        title = page.inner_text("#title")
    counts = _colour_pixels(screenshot, palette(4))
    assert all(c > 1000 for c in counts), counts  # every cluster's colour is drawn, many dots each
    name0 = planted_page["clusters"][0]["name"]
    assert hover == [f"id {row.note_id}", f"cluster {name0}", f"label {row.label}"]  # no note text by default
    assert title == "600 notes, 4 clusters"


def _expected_matches(planted_page, query: str) -> tuple[list[int], list[int]]:
    """The rows the page must match for `query` (id exact, term or label substring), and the clusters by term."""
    q, table = query.strip().lower(), planted_page["table"]
    by_term = [c["cluster"] for c in planted_page["clusters"] if any(q in t.lower() for t in c["top_terms"])]
    by_label = table.label.str.lower().str.contains(q, regex=False)
    hit = (table.note_id.astype(str).str.lower() == q) | table.cluster.isin(by_term) | by_label
    return np.flatnonzero(hit.to_numpy()).tolist(), by_term


def test_search_counts_and_highlights_matches(planted_page, browser):
    from embednv.mapping.render import palette

    clusters, table = planted_page["clusters"], planted_page["table"]
    term = clusters[2]["top_terms"][0]
    rows, by_term = _expected_matches(planted_page, term)
    assert 2 in by_term and len(rows) >= clusters[2]["size"]
    with opened(browser, planted_page["html"]) as page:
        page.fill("#search", term)  # typed; the page searches 120 ms after the last key
        page.wait_for_function("() => document.getElementById('match-count').textContent !== ''")
        count_text = page.inner_text("#match-count")
        matches = page.evaluate("embednvMap.matches()")
        shot = painted(page)
        page.fill("#search", str(table.note_id[7]))
        page.press("#search", "Enter")
        id_text, id_matches = page.inner_text("#match-count"), page.evaluate("embednvMap.matches()")
        page.fill("#search", "Neurology")
        page.press("#search", "Enter")
        label_text, label_matches = page.inner_text("#match-count"), page.evaluate("embednvMap.matches()")
    plural = "" if len(by_term) == 1 else "s"
    assert count_text == f"{len(rows)} matches (term: {len(by_term)} cluster{plural})"
    assert matches == rows
    # Highlighted: the matching clusters opaque; every other point faded to grey.
    colours = palette(4)
    assert all(c > 500 for c in _colour_pixels(shot, [colours[c] for c in by_term], opacity=1.0))
    others = [colours[c] for c in range(4) if c not in by_term]
    assert all(c < 50 for c in _colour_pixels(shot, others)), _colour_pixels(shot, others)
    assert id_text == "1 match (id 1)" and id_matches == [7]
    label_rows, _ = _expected_matches(planted_page, "Neurology")
    assert label_matches == label_rows and len(label_rows) == (table.label == "neurology").sum() == 150
    assert label_text.startswith("150 matches (") and "label: 1 label" in label_text


def test_a_click_on_a_legend_entry_or_a_point_opens_the_cluster_panel(planted_page, browser):
    clusters, table = planted_page["clusters"], planted_page["table"]
    c1 = table[table.cluster == 1]
    core = c1.iloc[int(np.argmin(np.hypot(c1.x - c1.x.median(), c1.y - c1.y.median())))]  # deep inside cluster 1
    with opened(browser, planted_page["html"]) as page:
        page.click("#legend li[data-group='2'] .name")
        panel2 = _panel(page)
        page.click("#panel-exemplars li:first-child button")  # an exemplar id finds its note
        page.wait_for_function("() => document.getElementById('match-count').textContent !== ''")
        found = page.inner_text("#match-count"), page.evaluate("embednvMap.matches()")
        page.mouse.click(*page.evaluate("([x, y]) => embednvMap.toScreen(x, y)", [float(core.x), float(core.y)]))
        panel1 = _panel(page)
    for panel, row in ((panel2, clusters[2]), (panel1, clusters[1])):
        assert panel["title"] == row["name"]
        assert panel["size"] == str(row["size"]) and panel["share"] == f"{100 * row['size'] / 600:.1f}%"
        assert panel["exemplars"] == [str(i) for i in row["exemplar_ids"]] and len(panel["exemplars"]) == 5
        assert panel["terms"] == ", ".join(row["top_terms"])
        mix = [f"{d['label']}: {d['count']} ({100 * d['count'] / row['size']:.0f}%)" for d in row["top_labels"]]
        assert panel["labels"] == mix
    row_index = int(np.flatnonzero(table.note_id.to_numpy() == clusters[2]["exemplar_ids"][0])[0])
    assert found == ("1 match (id 1)", [row_index]) and table.cluster[row_index] == 2


def _panel(page) -> dict:
    page.wait_for_selector("#panel:not([hidden])")
    return {
        "title": page.inner_text("#panel-title"),
        "size": page.inner_text("#panel-size"),
        "share": page.inner_text("#panel-share"),
        "terms": page.inner_text("#panel-terms"),
        "exemplars": page.locator("#panel-exemplars li").all_inner_texts(),
        "labels": page.locator("#panel-labels li").all_inner_texts(),
    }


def _download_csv(page) -> str:
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename == "selected-ids.csv"
    with open(download.path(), encoding="utf-8", newline="") as f:
        return f.read()


def test_box_and_lasso_selection_count_and_download_the_selected_ids(planted_page, browser):
    table = planted_page["table"]
    c3 = table[table.cluster == 3]
    lo, hi = (float(c3.x.min()), float(c3.y.min())), (float(c3.x.max()), float(c3.y.max()))
    with opened(browser, planted_page["html"]) as page:

        def screen(x, y):
            return page.evaluate("([x, y]) => embednvMap.toScreen(x, y)", [x, y])

        (ax, ay), (bx, by) = screen(lo[0], hi[1]), screen(hi[0], lo[1])  # top-left, bottom-right on screen
        page.click("#mode-box")
        page.mouse.move(ax - 8, ay - 8)
        page.mouse.down()
        page.mouse.move((ax + bx) / 2, (ay + by) / 2, steps=4)
        page.mouse.move(bx + 8, by + 8, steps=4)
        page.mouse.up()
        box = page.evaluate("embednvMap.selection()")
        box_count, box_selected = page.inner_text("#selection-count"), page.evaluate("embednvMap.selected()")
        box_csv = _download_csv(page)
        # A lasso: an octagon drawn around the middle of cluster 0, a third as wide as the cluster.
        c0 = table[table.cluster == 0]
        cx, cy = screen(float(c0.x.median()), float(c0.y.median()))
        r = (screen(float(c0.x.max()), 0.0)[0] - screen(float(c0.x.min()), 0.0)[0]) / 6
        page.click("#mode-lasso")
        page.mouse.move(cx + r, cy)
        page.mouse.down()
        for a in np.linspace(0, 2 * np.pi, 9)[1:]:
            page.mouse.move(cx + r * np.cos(a), cy + r * np.sin(a), steps=3)
        page.mouse.up()
        lasso = page.evaluate("embednvMap.selection()")
        lasso_count, lasso_selected = page.inner_text("#selection-count"), page.evaluate("embednvMap.selected()")
        lasso_csv = _download_csv(page)
        page.click("#clear-selection")
        cleared = page.is_hidden("#selection"), page.evaluate("embednvMap.selected()")
    xa, ya, xb, yb = box["rect"]
    assert box["kind"] == "box" and xa < lo[0] and ya < lo[1] and xb > hi[0] and yb > hi[1]
    in_box = np.flatnonzero(((table.x >= xa) & (table.x <= xb) & (table.y >= ya) & (table.y <= yb)).to_numpy()).tolist()
    assert box_selected == in_box and set(c3.index) <= set(in_box)
    assert box_count == f"{len(in_box)} selected"
    assert box_csv == _csv_of(table, in_box)
    assert lasso["kind"] == "lasso" and len(lasso["polygon"]) >= 8
    inside = Polygon(np.array(lasso["polygon"])).contains_points(table[["x", "y"]].to_numpy())
    assert lasso_selected == np.flatnonzero(inside).tolist() and 0 < len(lasso_selected) < len(c0)
    assert lasso_count == f"{len(lasso_selected)} selected" and lasso_csv == _csv_of(table, lasso_selected)
    assert cleared == (True, [])


def _csv_of(table, rows) -> str:
    lines = ['"id","cluster","label"'] + [f'"{table.note_id[i]}","{table.cluster[i]}","{table.label[i]}"' for i in rows]
    return "\r\n".join(lines) + "\r\n"


def test_colour_by_known_label(planted_page, browser):
    from embednv.mapping.known_labels import KnownLabels
    from embednv.mapping.render import palette
    from embednv.mapping.render_html import _label_payload

    table = planted_page["table"]
    label_colours = [g["colour"] for g in _label_payload(KnownLabels.from_values(table.label.tolist()))["groups"]]
    with opened(browser, planted_page["html"]) as page:
        page.select_option("#colour-by", "label")
        shot = painted(page)
        legend = page.locator("#legend .name").all_inner_texts()
        heading, mode = page.inner_text("#legend-title"), page.evaluate("embednvMap.colourBy()")
        page.click("#legend li[data-group='1'] .name")  # a label's legend entry finds its notes
        found = page.evaluate("embednvMap.matches()")
        page.uncheck("#legend li[data-group='0'] input")  # hidden points can be neither hovered nor selected
        page.evaluate("embednvMap.selectBox(-1e9, -1e9, 1e9, 1e9)")
        shown = page.evaluate("embednvMap.selected()")
    assert legend == sorted(set(table.label)) and heading.lower() == "labels" and mode == "label"  # 150 each: by name
    assert all(c > 1000 for c in _colour_pixels(shot, label_colours)), _colour_pixels(shot, label_colours)
    assert all(c < 50 for c in _colour_pixels(shot, palette(4))), _colour_pixels(shot, palette(4))
    assert found == np.flatnonzero((table.label == legend[1]).to_numpy()).tolist()
    assert shown == np.flatnonzero((table.label != legend[0]).to_numpy()).tolist()


def test_colour_by_group_shows_the_coarse_level(planted_page, browser):
    """Groups of clusters: named regions in the legend, each point coloured by its cluster's group."""
    import pyarrow.parquet as pq

    out = planted_page["html"].parent
    levels = pq.read_table(out / "clusters.parquet").to_pylist()
    groups = [row for row in levels if row["level"] == "group"]
    parent = {row["cluster"]: row["parent"] for row in levels if row["level"] == "cluster"}
    with opened(browser, planted_page["html"]) as page:
        options = page.locator("#colour-by option").all_inner_texts()
        page.select_option("#colour-by", "group")
        legend = page.locator("#legend .name").all_inner_texts()
        counts = page.locator("#legend .count").all_inner_texts()
        heading, mode = page.inner_text("#legend-title"), page.evaluate("embednvMap.colourBy()")
        page.click("#legend li[data-group='0'] .name")  # opens the group's largest cluster
        title, within = page.inner_text("#panel-title"), page.inner_text("#panel-group")
    assert "group of clusters" in options and mode == "group" and heading.lower() == "groups of clusters"
    assert legend == [row["name"] for row in groups] and counts == [str(row["size"]) for row in groups]
    first = min(c for c, g in parent.items() if g == 0)
    assert title.startswith(f"{first}") and within == f"in {groups[0]['name']}"


HOSTILE_IDS = [
    "</script><img src=x onerror=alert(1)>", "=cmd|' /C calc'!A0", "+1-2", "@SUM(1)", "-5", 'say "hi", ok', "<b>x</b>",
    "-cmd", "\tTAB", "plain",
]  # fmt: skip
# The ids as the CSV must write them between its quotes: formulas prefixed with ', quotes doubled.
CSV_IDS = [
    "</script><img src=x onerror=alert(1)>", "'=cmd|' /C calc'!A0", "'+1-2", "'@SUM(1)", "-5", 'say ""hi"", ok',
    "<b>x</b>", "'-cmd", "'\tTAB", "plain",
]  # fmt: skip


def test_hostile_strings_stay_text_in_the_page_and_the_csv(tmp_path, browser):
    from embednv.mapping.known_labels import KnownLabels
    from embednv.mapping.outputs import ClusterSummary
    from embednv.mapping.render_html import render_html

    n = len(HOSTILE_IDS)
    y = np.stack([np.arange(n) % 5 * 10.0, np.arange(n) // 5 * 10.0], axis=1)  # a grid: no two points close
    labels = (np.arange(n) % 2).astype(np.int32)
    names = ["0: <img src=x onerror=alert(3)>", "1: </script>"]
    summary = ClusterSummary(
        sizes=np.bincount(labels), medians=y[:2], exemplar_ids=[HOSTILE_IDS[0::2][:3], HOSTILE_IDS[1::2][:3]],
        names=names, terms=[["<script>alert(4)</script>"], ["&lt;"]], composition=[[("<i>x</i>", 3)], [("=1+1", 2)]],
    )  # fmt: skip
    known = ["<i>x</i>" if c == 0 else "=1+1" for c in labels]
    texts = [f"<img src=x onerror=alert({i})> note {i}" for i in range(n)]
    html_path = tmp_path / "hostile.html"
    render_html(
        html_path,
        HOSTILE_IDS,
        y,
        labels,
        names,
        "<script>alert(5)</script>",
        KnownLabels.from_values(known),
        texts,
        summary,
    )
    with opened(browser, html_path) as page:
        injected = page.evaluate("document.querySelectorAll('img, iframe, object, embed, b, i').length")
        scripts = page.evaluate("document.scripts.length")
        page.mouse.move(*page.evaluate("([x, y]) => embednvMap.toScreen(x, y)", [0.0, 0.0]))
        page.wait_for_selector("#tooltip:not([hidden])")
        hover = page.inner_text("#tooltip").splitlines()
        page.evaluate("embednvMap.openCluster(0)")
        panel = _panel(page)
        page.evaluate(f"embednvMap.selectIndices([...Array({n}).keys()])")
        text = _download_csv(page)
        title = page.title()
    assert injected == 0 and scripts == 2 and title == "<script>alert(5)</script>"
    assert hover == [
        f"id {HOSTILE_IDS[0]}",
        f"cluster {names[0]}",
        "label <i>x</i>",
        "<img src=x onerror=alert(0)> note 0",
    ]
    assert panel["exemplars"] == HOSTILE_IDS[0::2][:3] and panel["terms"] == "<script>alert(4)</script>"
    rows = text.split("\r\n")
    assert rows[0] == '"id","cluster","label"' and rows[-1] == ""
    label_cells = {0: "<i>x</i>", 1: "'=1+1"}
    assert rows[1:-1] == [f'"{i}","{c}","{label_cells[c]}"' for i, c in zip(CSV_IDS, labels)]
    parsed = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in parsed[1:]] == [s.replace('""', '"') for s in CSV_IDS]


def test_hostile_labels_stay_text_bidi_is_shown_and_csv_formulas_behind_spaces_are_neutralised(tmp_path, browser):
    from embednv.mapping.known_labels import KnownLabels
    from embednv.mapping.outputs import ClusterSummary
    from embednv.mapping.render_html import render_html

    ids = [" =1+1", "＝1+1", "\t=1", "\u00a0@SUM(A1)", "a\u202eb", "plain"]
    n = len(ids)
    y = np.stack([np.arange(n) * 10.0, np.zeros(n)], axis=1)
    labels = np.zeros(n, dtype=np.int32)
    image = "![x](http://host/beacon.png)"
    known = [image if i % 2 else "x\u2067y" for i in range(n)]
    summary = ClusterSummary(
        sizes=np.array([n]), medians=y[:1], exemplar_ids=[ids[:3]], names=["0: cluster"], terms=[["term"]],
        composition=[[(image, 3), ("x\u2067y", 3)]],
    )  # fmt: skip
    html_path = tmp_path / "hostile.html"
    render_html(html_path, ids, y, labels, ["0: cluster"], "t\u202et", KnownLabels.from_values(known), None, summary)
    with opened(browser, html_path) as page:
        page.evaluate("embednvMap.openCluster(0)")
        panel = _panel(page)
        injected = page.evaluate("document.querySelectorAll('img, a[href]').length")
        shown = page.evaluate("document.body.innerText + document.title")
        page.evaluate(f"embednvMap.selectIndices([...Array({n}).keys()])")
        text = _download_csv(page)
    assert injected == 0 and panel["labels"] == [f"{image}: 3 (50%)", "x\\u2067y: 3 (50%)"]
    assert not any(c in shown for c in "\u202e\u2067") and "t\\u202et" in shown
    cells = [row[0] for row in csv.reader(io.StringIO(text))][1:]
    assert cells == ["' =1+1", "'＝1+1", "'\t=1", "'\u00a0@SUM(A1)", "a\\u202eb", "plain"]


@pytest.fixture(scope="module")
def sampled_map(planted_map, tmp_path_factory):
    """The planted map again with a point budget of 120: the page draws 120 of the 600 notes."""
    import dataclasses

    from embednv.mapping.run import run_map

    config = dataclasses.replace(
        planted_map["config"], out_dir=tmp_path_factory.mktemp("sampled") / "map", html_points=120
    )
    run_map(config)
    return config.out_dir


def test_above_the_point_budget_a_sample_is_drawn_search_finds_any_id_and_a_region_gives_every_note(
    sampled_map, browser, tmp_path
):
    from embednv.cohort_cli import cohort_command
    from embednv.region import read_region

    table = pq.read_table(sampled_map / "map.parquet").to_pandas()
    clusters = pq.read_table(sampled_map / "clusters.parquet", filters=[("level", "=", "cluster")]).to_pylist()
    with opened(browser, sampled_map / "map.html") as page:
        n, total, note = (
            page.evaluate("embednvMap.n"),
            page.evaluate("embednvMap.nTotal"),
            page.inner_text("#drawn-note"),
        )
        exemplars = [page.evaluate(f"embednvMap.search('{i}').count") for c in clusters for i in c["exemplar_ids"]]
        undrawn_id = next(i for i in table.note_id if page.evaluate(f"embednvMap.search('{i}').count") == 0)
        info = page.evaluate(f"embednvMap.search('{undrawn_id}')")
        found_text, panel = page.inner_text("#match-count"), page.inner_text("#panel-title")
        page.evaluate("embednvMap.search('')")
        # A lasso around the middle of the map, as the mouse would draw it: a hexagon in map coordinates.
        cx, cy = float(table.x.median()), float(table.y.median())
        r = float(table.x.max() - table.x.min()) / 4
        polygon = [[cx + r * np.cos(a), cy + r * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 7)[:-1]]
        page.evaluate("(p) => embednvMap.selectLasso(p)", polygon)
        count_text, selected = page.inner_text("#selection-count"), page.evaluate("embednvMap.selected()")
        selected_ids = [
            int(row["id"]) for row in csv.DictReader(io.StringIO(page.evaluate("embednvMap.selectionCsv()")))
        ]
        with page.expect_download() as download:
            page.click("#export-region")
        region_path = tmp_path / "region.json"
        region_path.write_bytes(open(download.value.path(), "rb").read())
        assert download.value.suggested_filename == "region.json"
    assert (n, total) == (120, 600) and note == "drawn: 120 of 600 notes (each cluster's share, every exemplar)"
    assert exemplars == [1] * 5 * len(clusters)  # every exemplar is drawn (a search by id finds one point)
    page_ids = [int(i) for i in _page_ids(sampled_map)]
    drawn_clusters = np.bincount(table.set_index("note_id").cluster[page_ids], minlength=len(clusters))
    assert len(page_ids) == 120 and (np.abs(drawn_clusters - [c["size"] * 120 / 600 for c in clusters]) <= 2).all()
    undrawn_cluster = int(table.cluster[table.note_id == undrawn_id].iloc[0])
    name = clusters[undrawn_cluster]["name"]
    assert info["undrawn"] == {"id": str(undrawn_id), "cluster": undrawn_cluster} and info["count"] == 0
    assert found_text == f"0 matches (id {undrawn_id}: not drawn; in cluster {name})" and panel == name
    # Every note inside the region, drawn or not, from map.parquet: the page's selection is exactly the drawn ones.
    region = read_region(str(region_path))
    assert region.shape == "lasso" and region.polygon.tolist() == polygon  # map coordinates, exactly
    app = typer.Typer()
    app.command("cohort")(cohort_command)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["cohort", str(sampled_map), "--region", str(region_path)])
    assert result.exit_code == 0, result.output
    inside = [int(v.strip('"')) for v in result.stdout.split()[1:]]
    expected = table.note_id[Polygon(np.array(polygon)).contains_points(table[["x", "y"]].to_numpy())].tolist()
    assert inside == expected and len(inside) > 2 * len(selected) > 0
    assert len(selected_ids) == len(selected) and sorted(selected_ids) == sorted(set(inside) & set(page_ids))
    assert count_text == f"{len(selected)} selected of the drawn points (the region JSON covers every note)"


def _page_ids(map_dir) -> list[str]:
    """The drawn ids as map.html carries them (its JSON block)."""
    html_text = (map_dir / "map.html").read_text(encoding="utf-8")
    start = html_text.index('<script type="application/json" id="map-data">') + len(
        '<script type="application/json" id="map-data">'
    )
    return json.loads(html_text[start : html_text.index("</script>", start)])["ids"]
