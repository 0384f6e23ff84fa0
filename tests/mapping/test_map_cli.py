import dataclasses
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from embednv.errors import InputError
from embednv.mapping import run as run_module
from embednv.mapping.cli import map_command

app = typer.Typer()
app.command("map")(map_command)


@app.callback()
def _root() -> None:
    """A group, as in the main app, so `map` is a subcommand."""


runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["map", *map(str, args)])


def _error_line(result) -> str:
    """The one line that is not progress logging (`embednv: ...`)."""
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("embednv: ")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_missing_directory_is_one_line_and_exit_2(tmp_path):
    result = _invoke(tmp_path / "nope", "--out", tmp_path / "m")
    assert result.exit_code == 2
    assert _error_line(result) == f"error: Embedding directory not found: {tmp_path / 'nope'}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--clusters", "many"], "error: Invalid --clusters 'many': expected 'auto' or an integer"),
        (["--perplexity", "high"], "error: Invalid --perplexity 'high': expected 'auto' or a number"),
        (["--backend", "gpu"], "error: Invalid --backend 'gpu'. Valid: auto, cuml, cpu"),
        (["--multiscale", "yes"], "error: Invalid --multiscale 'yes'. Valid: auto, on, off"),
        (["--place-method", "umap"], "error: Invalid --place-method 'umap'. Valid: auto, opentsne, knn"),
        (
            ["--update", "--overwrite"],
            "error: --update places notes on the map in --out; --overwrite replaces it: give one",
        ),
        (["--update"], "error: --update needs a finished map in --out {out}; make one first without --update"),
    ],
)
def test_bad_options_are_one_line(planted, tmp_path, args, message):
    result = _invoke(planted["emb_dir"], "--out", tmp_path / "m", *args)
    assert (result.exit_code, _error_line(result)) == (2, message.format(out=tmp_path / "m"))


def test_backend_cuml_without_cuml(planted, tmp_path, monkeypatch):
    from embednv.mapping import backends

    monkeypatch.setattr(backends, "cuml_status", lambda: (False, "cuML is not installed"))
    result = _invoke(planted["emb_dir"], "--out", tmp_path / "m", "--backend", "cuml")
    assert result.exit_code == 2
    assert _error_line(result).startswith("error: --backend cuml cannot run here: cuML is not installed")


def test_debug_raises_with_traceback(tmp_path):
    result = runner.invoke(app, ["map", str(tmp_path / "nope"), "--out", str(tmp_path / "m"), "--debug"])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)  # no such embeddings directory


def test_full_run_with_show_text(planted, tmp_path, monkeypatch):
    real = run_module.run_map

    def fast(config):  # the CLI has no iteration options; shorten t-SNE for the test only
        return real(
            dataclasses.replace(config, tsne=dataclasses.replace(config.tsne, early_exaggeration_iter=100, n_iter=150))
        )

    monkeypatch.setattr(run_module, "run_map", fast)
    out = tmp_path / "m"
    result = _invoke(
        planted["emb_dir"], "--out", out, "--clusters", "4", "--perplexity", "20", "--seed", "1",
        "--backend", "cpu", "--multiscale", "off", "--texts", planted["notes"], "--text-column", "transcription",
        "--labels-column", "medical_specialty", "--show-text",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "map of 600 notes (4 clusters, cpu) written to" in result.output
    note = pq.read_table(planted["notes"]).column("transcription")[0].as_py()
    assert " ".join(note.split())[:30] in (out / "map.html").read_text()  # hover text present when asked
    assert pq.read_table(out / "map.parquet").num_rows == 600
    tsne = json.loads((out / "_manifest.json").read_text())["tsne"]
    assert (tsne["perplexity"], tsne["multiscale"], tsne["perplexities"]) == (20, False, [20])


def test_importing_the_command_stays_light():
    heavy = "('numpy', 'pyarrow', 'sklearn', 'openTSNE', 'plotly', 'matplotlib')"
    code = f"import sys, embednv.mapping.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
