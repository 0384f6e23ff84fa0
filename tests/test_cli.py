"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

EMBEDNV = [sys.executable, "-m", "embednv.cli"]


def run(*args, **kwargs):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([*EMBEDNV, *args], capture_output=True, text=True, env=env, timeout=600, **kwargs)


def test_help_imports_no_heavy_library():
    code = "import sys, embednv.cli; print(sorted(m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'faiss') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    result = run("--help")
    assert result.returncode == 0 and all(c in result.stdout for c in ("embed", "sample-corpus", "map", "cohort"))


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": [1, 2], "text": ["Cough.", "Fever."]}), path)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text-column", "body"], "notes.parquet: no column 'body' (columns: note_id, text)"),
        (["--id-column", "mrn"], "notes.parquet: no column 'mrn'"),
        (["--device", "tpu"], "Invalid --device 'tpu'. Valid: auto, cpu, cuda"),
        (["--model", "no-such-model"], "Unknown model 'no-such-model'"),
    ],
)
def test_errors_are_one_line_without_traceback(notes, tmp_path, args, message):
    result = run("embed", str(notes), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_missing_and_empty_inputs(tmp_path):
    result = run("embed", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "nope.csv: no such file or directory" in result.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("note_id,text\n")
    result = run("embed", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "empty.csv: no rows to embed (empty input)" in result.stderr


def test_debug_shows_the_traceback(notes, tmp_path):
    result = run("embed", str(notes), "--out", str(tmp_path / "out"), "--text-column", "body", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_sample_corpus_is_deterministic_and_varied(tmp_path):
    for name in ("a", "b"):
        assert run("sample-corpus", str(tmp_path / f"{name}.parquet"), "--n", "3000", "--seed", "7").returncode == 0
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)
    assert a.column_names == ["note_id", "text", "specialty"]
    assert len(set(a.column("specialty").to_pylist())) >= 10
    words = sorted(len(t.split()) for t in a.column("text").to_pylist())
    assert words[0] < 30 and words[len(words) // 2] < 400 and words[-1] > 1500  # long-tailed
    other = run("sample-corpus", str(tmp_path / "c.parquet"), "--n", "100", "--seed", "8")
    assert other.returncode == 0 and not pq.read_table(tmp_path / "c.parquet").column("text").equals(
        a.column("text").slice(0, 100)
    )


def test_embed_prints_a_summary_line(notes, tmp_path):
    # The local executor: the default (Ray) prints the same line, as the stale-address test checks
    # (embed/test_operations.py).
    args = ["embed", str(notes), "--out", str(tmp_path / "out"), "--model", "minilm", "--executor", "local"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "embedded 2 of 2 notes (0 errors)" in result.stdout and "tokens/s" in result.stdout
    again = run(*args)
    assert again.returncode == 0 and "already complete" in again.stdout
