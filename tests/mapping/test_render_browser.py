"""Open map.html in a real headless Chromium: no errors, no network, points drawn, hover works."""

import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="chromium not installed (apt-get install chromium)"
)


def _colour_pixels(png: bytes, colours: list[str], opacity: float = 0.75, tol: int = 30) -> list[int]:
    """Pixels of each colour as drawn: markers at `opacity` over the white background."""
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)  # (H, W, 3)
    counts = []
    for hex_colour in colours:
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        drawn = opacity * rgb + (1 - opacity) * 255
        counts.append(int((np.abs(img - drawn).sum(axis=2) < tol).sum()))
    return counts


def test_map_html_renders_offline_with_points_and_hover(planted_map):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) not installed")
    from embednv.mapping.render import palette

    out = planted_map["config"].out_dir
    html = out / "map.html"
    table = pq.read_table(out / "map.parquet").to_pandas()
    point = table.loc[table.cluster == 0, ["x", "y"]].iloc[0].astype(float).tolist()
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            plotted = "() => { const g = document.querySelector('.js-plotly-plot'); return g && g._fullLayout; }"
            page.wait_for_function(plotted)
            page.wait_for_selector(".js-plotly-plot canvas")
            page.wait_for_timeout(500)  # WebGL draws on the next frames
            screenshot = page.screenshot()
            if os.environ.get("EMBEDNV_SCREENSHOT"):  # to look at it: EMBEDNV_SCREENSHOT=/tmp/map.png
                with open(os.environ["EMBEDNV_SCREENSHOT"], "wb") as f:
                    f.write(screenshot)
            # Hover over the first point: the label must show its id, cluster and known label.
            xy = page.evaluate(
                """([x, y]) => { const g = document.querySelector('.js-plotly-plot');
                  const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
                  return [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(y)]; }""",
                point,
            )
            page.mouse.move(*xy)
            page.wait_for_selector(".hoverlayer .hovertext", timeout=5000)
            hover = page.text_content(".hoverlayer .hovertext")  # an SVG group: no inner_text
            dragmode = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.dragmode")
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))] == []
    counts = _colour_pixels(screenshot, palette(4))
    assert all(c > 1000 for c in counts), counts  # every cluster's colour is drawn, many dots each
    assert re.search(r"id \d{4}", hover) and re.search(r"cluster \d+: ", hover), hover
    assert re.search(r"label (cardiology|orthopedics|neurology|gastroenterology)", hover), hover
    assert dragmode == "pan"
