"""The map's text outputs show hostile ids, labels and terms as text: clusters.md rendered by a real
Markdown renderer (GitHub-like, with linkify) has no link or image, and no text output carries a
bidi control."""

from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.mapping.outputs import ClusterSummary, write_clusters
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.tsne_params import TSNEParams

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HOSTILE = [
    "![x](http://host/beacon.png)",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "http://host.example/a?b=c",
    "www.example.com",
    "nurse@example.com",
    "<http://x.example>",
    "//cdn.example/x.js",
    "*em* _u_ ~~s~~ `c` $x^2$",
    "a\\|b x|y",
    "&lt; &#60;",
    "# not a heading",
    "==mark== ++ins++ {.class}",
    "evil\u202etxt.exe",
]


def _render_markdown(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (the test extra) not installed")
    pytest.importorskip("linkify_it", reason="linkify-it-py (the test extra) not installed")
    return markdown_it.MarkdownIt("gfm-like").render(text)  # tables, strikethrough, linkify: as GitHub shows it


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.cells, self._cell = set(), [], None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_clusters_md_shows_hostile_values_as_text(tmp_path):
    """A label `![x](http://host/beacon.png)` used to render as a remote image; URLs became links."""
    n = len(HOSTILE)
    summary = ClusterSummary(
        sizes=np.array([n, n]),
        medians=np.zeros((2, 2)),
        exemplar_ids=[HOSTILE, HOSTILE[::-1]],
        names=["a", "b"],
        terms=[HOSTILE, HOSTILE[:2]],
        composition=[[(h, 1) for h in HOSTILE], [(HOSTILE[0], n)]],
    )
    write_clusters(tmp_path / "c.parquet", tmp_path / "c.md", summary, summary, np.array([0, 1]), pa.string())
    parser = _Cells()
    parser.feed(_render_markdown((tmp_path / "c.md").read_text()))
    assert parser.tags <= {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td"}
    shown = [h.replace("\u202e", "\\u202e") for h in HOSTILE]  # bidi controls are shown, not obeyed
    # Each cell renders back to exactly the values, in order: nothing was eaten as markup.
    assert parser.cells[:6] == [
        "0",
        f"{n} (50.0%)",
        "0",
        ", ".join(shown),
        ", ".join(shown),
        ", ".join(f"{h} 7%" for h in shown),
    ]


def test_no_text_output_of_a_map_carries_a_bidi_control(tmp_path, shards):
    rng = np.random.default_rng(0)
    n = 40
    x = np.repeat(rng.standard_normal((2, 16)) * 3, n // 2, axis=0) + rng.standard_normal((n, 16))
    ids = [f"{BIDI[i % len(BIDI)]}id-{i}" for i in range(n)]
    emb = shards(tmp_path / "emb", pa.array(ids), x / np.linalg.norm(x, axis=1, keepdims=True))
    labels = [f"{HOSTILE[i % len(HOSTILE)]} {BIDI[i % len(BIDI)]}" for i in range(n)]
    texts = [
        f"cardiac stent {BIDI[i % len(BIDI)]} note" if i < n // 2 else "fracture femur cast note" for i in range(n)
    ]
    pq.write_table(pa.table({"note_id": ids, "text": texts, "label": labels}), tmp_path / "notes.parquet")
    out = tmp_path / "map"
    config = MapConfig(
        emb_dir=emb,
        out_dir=out,
        tsne=TSNEParams(early_exaggeration_iter=100, n_iter=150),
        backend="cpu",
        placement="local",
        texts=tmp_path / "notes.parquet",
        labels_column="label",
        show_text=True,
    )
    run_map(config)
    written = {p.name: p for p in out.iterdir()}
    text_files = sorted(name for name in written if not name.endswith((".parquet", ".png", ".npz")))
    assert text_files == ["_manifest.json", "clusters.md", "map.html", "metrics.json"]
    for name in text_files:
        text = written[name].read_text(encoding="utf-8")
        assert not [c for c in BIDI if c in text], name
    page = written["map.html"].read_text(encoding="utf-8")
    assert "\\\\u202eid-4" in page  # the id, with its override shown as an escape (JSON-encoded backslash)
    assert "<img" not in page and "<a " not in page
    parser = _Cells()
    parser.feed(_render_markdown(written["clusters.md"].read_text()))
    assert "a" not in parser.tags and "img" not in parser.tags
    # Parquet is data, not text for people: it keeps every id exactly, to join back on.
    assert pq.read_table(out / "map.parquet").column("note_id").to_pylist() == ids
