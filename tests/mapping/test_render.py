import base64
import html
import json
import re
import sys
from html.parser import HTMLParser

import numpy as np

from embednv.mapping import render, render_html
from embednv.mapping.known_labels import KnownLabels
from embednv.mapping.outputs import ClusterSummary


def _blobs(n=400, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n).astype(np.int32)
    return rng.standard_normal((k, 2))[labels] * 20 + rng.standard_normal((n, 2)), labels


def test_palette_gives_distinct_colours_for_up_to_60_clusters():
    colours = render.palette(60)
    assert len(set(colours)) == 60 and render.palette(3) == colours[:3]


def test_small_maps_are_drawn_as_dots(tmp_path):
    y, labels = _blobs()
    assert render.render_png(tmp_path / "m.png", y, labels, ["a", "b", "c", "d"], "t") == "scatter"
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_large_maps_fall_back_to_a_log_histogram_without_datashader(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "SCATTER_MAX_POINTS", 100)
    monkeypatch.setitem(sys.modules, "datashader", None)  # import now raises ImportError
    y, labels = _blobs()
    assert render.render_png(tmp_path / "m.png", y, labels, ["a", "b", "c", "d"], "t") == "hist2d"


def test_medians():
    y = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [9.0, 9.0]])
    med = render.cluster_medians(y, np.array([0, 0, 0, 1]), 3)
    assert med[:2].tolist() == [[2.0, 2.0], [9.0, 9.0]] and np.isnan(med[2]).all()


def test_hover_text_is_collapsed_and_cut():
    assert render_html._short_text("a  <b>bold</b>\n\tclaim") == "a <b>bold</b> claim"  # shown with textContent
    long = render_html._short_text("word " * 100)
    assert len(long) == render_html.HOVER_TEXT_CHARS + 1 and long.endswith("…")
    assert render_html._short_text(None) == ""


HOSTILE = [
    "</script><img src=x onerror=alert(1)>",
    "=cmd|' /C calc'!A0",
    "<!--",
    "<script>alert(2)</script>",
    "\u2028\"'&amp;",
]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts[-1][1] += data


def _hostile_page(tmp_path):
    n = 40
    y, labels = _blobs(n, 2)
    ids = [*HOSTILE, *(f"id{i}" for i in range(n - len(HOSTILE)))]
    known = [HOSTILE[i % len(HOSTILE)] if i % 3 else None for i in range(n)]
    texts = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    names = [f"0: {HOSTILE[0]}", f"1: {HOSTILE[3]}"]
    summary = ClusterSummary(
        sizes=np.bincount(labels, minlength=2),
        medians=render.cluster_medians(y, labels, 2),
        exemplar_ids=[[ids[i] for i in np.flatnonzero(labels == c)[:5]] for c in range(2)],
        names=names,
        terms=[HOSTILE[:3], HOSTILE[2:]],
        composition=[[(HOSTILE[0], 3)], [(HOSTILE[1], 2)]],
    )
    path = tmp_path / "map.html"
    render_html.render_html(path, ids, y, labels, names, HOSTILE[0], KnownLabels.from_values(known), texts, summary)
    return path, ids, known, texts, summary


def test_hostile_ids_labels_terms_and_texts_stay_data(tmp_path):
    path, ids, known, texts, summary = _hostile_page(tmp_path)
    page = path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    # Exactly the page's own elements: the hostile strings added none (no img, no third script).
    assert "img" not in parser.tags
    assert [attrs for attrs, _ in parser.scripts] == [{"type": "application/json", "id": "map-data"}, {}]
    assert page.count("</script>") == 2 and "<img" not in page and "<!--" not in page
    data = json.loads(parser.scripts[0][1])  # the data block round-trips every string exactly
    assert data["ids"] == ids and data["texts"] == [render_html._short_text(t) for t in texts]
    assert [c["name"] for c in data["clusters"]] == summary.names and data["title"] == HOSTILE[0]
    assert [c["exemplars"] for c in data["clusters"]] == summary.exemplar_ids
    assert [c["terms"] for c in data["clusters"]] == summary.terms
    assert [c["labels"] for c in data["clusters"]] == [[list(p) for p in comp] for comp in summary.composition]
    assert set(data["labels"]["values"]) == {v for v in known if v is not None}
    assert not re.search(r"[<>&]", parser.scripts[0][1])  # escaped as \u003c etc., not as entities
    # The script that runs is the shipped asset, admitted by hash; nothing may connect anywhere.
    script = parser.scripts[1][1]
    assert script == render_html._asset("map.js")
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1))
    assert render_html._sha256(script) in csp and "connect-src 'none'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "<title>&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</title>" in page


def test_page_embeds_coordinates_and_clusters_as_typed_arrays(tmp_path):
    y, labels = _blobs(50, 3)
    payload = render_html.map_payload(
        list(range(50)), y, labels, ["a", "b", "c"], "t", known=KnownLabels.from_values(["x", None] * 25)
    )
    xy = np.frombuffer(base64.b64decode(payload["xy"]["b64"]), dtype="<f4").reshape(-1, 2)
    assert payload["xy"]["dtype"] == "float32" and np.array_equal(xy, y.astype(np.float32))
    assert np.array_equal(np.frombuffer(base64.b64decode(payload["cluster"]["b64"]), np.uint8), labels)
    assert [c["size"] for c in payload["clusters"]] == np.bincount(labels, minlength=3).tolist()
    assert payload["ids"] == [str(i) for i in range(50)] and payload["texts"] is None
    lab = payload["labels"]
    codes = np.frombuffer(base64.b64decode(lab["codes"]["b64"]), np.uint8)
    assert lab["values"] == ["x"] and codes.tolist() == [0, 1] * 25  # code 1 = no label
    assert [(g["name"], g["size"]) for g in lab["groups"]] == [("x", 25), ("no label", 25)]
