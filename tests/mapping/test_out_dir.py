"""`embednv map --out` never writes over an input, never over an embeddings directory, and --overwrite
removes only the map's own files."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from embednv.directories import MAP_FILES
from embednv.errors import MapError
from embednv.mapping.cli import map_command
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.tsne_params import TSNEParams

FAST_TSNE = TSNEParams(early_exaggeration_iter=100, n_iter=150)
app = typer.Typer()
app.command("map")(map_command)


@app.callback()
def _root() -> None:
    """A group, as in the main app, so `map` is a subcommand."""


@pytest.fixture
def emb(tmp_path, shards):
    """40 unit vectors in 2 blobs, as `embed` writes them (shards, manifest, _SUCCESS, _errors.parquet)."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.standard_normal((2, 16)) * 3, 20, axis=0) + rng.standard_normal((40, 16))
    emb_dir = shards(tmp_path / "emb", np.arange(40), x / np.linalg.norm(x, axis=1, keepdims=True))
    manifest = {"kind": "embeddings", "fingerprint": "0123abcd", "model": {"name": "minilm"}, "id_column": "note_id"}
    (emb_dir / "_manifest.json").write_text(json.dumps(manifest))
    (emb_dir / "_SUCCESS").write_text("")
    pq.write_table(
        pa.table({"note_id": pa.array([], pa.int64()), "reason": pa.array([], pa.string())}),
        emb_dir / "_errors.parquet",  # where embednv before 0.2 kept them: still an embeddings directory
    )
    return emb_dir


def _config(emb_dir, out_dir, **kwargs):
    return MapConfig(
        emb_dir=emb_dir, out_dir=out_dir, **{"tsne": FAST_TSNE, "backend": "cpu", "placement": "local", **kwargs}
    )


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_out_equal_to_the_embeddings_it_reads_is_refused_with_overwrite(emb):
    """It used to replace the embeddings' _manifest.json: cohort --query, resume and readers then failed."""
    before = _snapshot(emb)
    result = CliRunner().invoke(app, ["map", str(emb), "--out", str(emb), "--overwrite", "--backend", "cpu"])
    lines = [line for line in result.output.splitlines() if not line.startswith("embednv: ")]
    assert (result.exit_code, lines) == (
        2,
        [f"error: --out {emb} is the embeddings directory {emb}: give a directory outside the map's inputs"],
    )
    assert _snapshot(emb) == before
    assert pd.read_parquet(emb)["note_id"].tolist() == list(range(40))


def test_out_inside_the_embeddings_directory_is_refused(emb):
    with pytest.raises(MapError, match=r"is inside the embeddings directory"):
        run_map(_config(emb, emb / "map", overwrite=True))
    assert not (emb / "map").exists()


@pytest.mark.parametrize(
    "name, content",
    [
        ("part-00000.parquet", None),
        ("_SUCCESS", ""),
        ("_errors.parquet", None),
        ("_errors/errors.parquet", None),
        ("_manifest.json", {"kind": "embeddings", "id_column": "note_id"}),
        ("_manifest.json", {"fingerprint": "0123abcd", "model": {"name": "minilm"}}),  # written before "kind"
        ("_manifest.json", {"something": "else"}),
    ],
)
def test_out_holding_an_embeddings_directorys_file_is_refused(emb, tmp_path, name, content):
    """Another embeddings directory (not the one read) as --out: refused whatever --overwrite says."""
    other = tmp_path / "other"
    other.mkdir()
    (other / name).parent.mkdir(exist_ok=True)
    if content is None:
        (other / name).write_bytes((emb / name.replace("_errors/errors", "_errors")).read_bytes())
    else:
        (other / name).write_text(json.dumps(content) if isinstance(content, dict) else content)
    before = _snapshot(other)
    with pytest.raises(MapError) as caught:
        run_map(_config(emb, other, overwrite=True))
    assert str(caught.value) == (
        f"--out {other} holds an embeddings directory ({name.split('/')[0]}): a map never writes there, --overwrite or not; "
        "give another directory"
    )
    assert _snapshot(other) == before


@pytest.mark.parametrize("option", ["texts", "labels"])
def test_out_inside_a_texts_or_labels_directory_is_refused(emb, tmp_path, option):
    notes = tmp_path / "notes"
    notes.mkdir()
    pq.write_table(
        pa.table({"note_id": np.arange(40), "text": ["a note"] * 40, "label": ["x"] * 40}), notes / "n.parquet"
    )
    extra = {"texts": notes} if option == "texts" else {"labels": notes, "labels_column": "label"}
    with pytest.raises(MapError, match=rf"^--out {notes / 'map'} is inside the --{option} directory {notes}: "):
        run_map(_config(emb, notes / "map", overwrite=True, **extra))
    assert sorted(p.name for p in notes.iterdir()) == ["n.parquet"]


def test_a_labels_file_the_map_would_replace_is_refused(emb, tmp_path):
    out = tmp_path / "map"
    out.mkdir()
    pq.write_table(pa.table({"note_id": np.arange(40), "label": ["x"] * 40}), out / "map.parquet")
    with pytest.raises(MapError, match=r"^--labels .*map\.parquet is a file the map in --out .* replaces"):
        run_map(_config(emb, out, overwrite=True, labels=out / "map.parquet", labels_column="label"))
    assert pq.read_table(out / "map.parquet").column_names == ["note_id", "label"]


def test_overwrite_replaces_only_the_maps_own_files(emb, tmp_path):
    """An older map (manifest without "kind") beside the user's files: only the map's files are replaced."""
    out = tmp_path / "map"
    out.mkdir()
    for name in MAP_FILES:
        (out / name).write_text("old")
    (out / "_manifest.json").write_text(json.dumps({"tool": "embednv map", "n": 3}))
    mine = {
        "notes.csv": "id\n1\n",
        "part-of-my-thesis.txt": "keep",
        ".map.png.tmp": "keep",
        "_manifest.json.bak": "keep",
    }
    for name, text in mine.items():
        (out / name).write_text(text)
    (out / ".map.png.1a2b3c4d.tmp").write_text("a temporary of ours, left by a crash")
    run_map(_config(emb, out, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == sorted([*MAP_FILES, *mine])
    assert all((out / name).read_text() == text for name, text in mine.items())
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["kind"] == "map" and manifest["n"] == 40
    assert pq.read_table(out / "map.parquet").num_rows == 40


def test_a_map_that_fails_leaves_the_previous_map_and_no_new_directory(emb, tmp_path, shards):
    bad = shards(tmp_path / "bad", np.arange(20), np.zeros((20, 8)))
    out = tmp_path / "map"
    out.mkdir()
    for name in MAP_FILES:
        (out / name).write_text("the previous map")
    (out / "_manifest.json").write_text(json.dumps({"kind": "map"}))
    before = _snapshot(out)
    with pytest.raises(MapError, match="20 all zeros"):
        run_map(_config(bad, out, overwrite=True))
    assert _snapshot(out) == before
    with pytest.raises(MapError, match="20 all zeros"):
        run_map(_config(bad, tmp_path / "new"))
    assert not (tmp_path / "new").exists()
