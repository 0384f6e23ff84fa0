import sys

import numpy as np

from embednv.mapping import render


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


def test_medians_and_hover_text_wrapping():
    y = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [9.0, 9.0]])
    med = render.cluster_medians(y, np.array([0, 0, 0, 1]), 3)
    assert med[:2].tolist() == [[2.0, 2.0], [9.0, 9.0]] and np.isnan(med[2]).all()
    wrapped = render._hover_text("word " * 100 + "<b>")
    assert all(len(line) <= 65 for line in wrapped.split("<br>"))
    assert "<b>" not in render._hover_text("a <b>bold</b> claim")  # note text is escaped
