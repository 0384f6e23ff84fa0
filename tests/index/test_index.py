"""`embednv index` and `cohort` answering from it: recall against the exact scan, equal answers where the
index is exact, readers that still see only the shards, and a stale index refused, never used."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from cli_output import error_line, read_csv
from note_files import TOPIC_NOTES
from shard_files import brute_force, write_shards
from typer.testing import CliRunner

from embednv import cohort
from embednv.directories import MANIFEST, OutputDir
from embednv.index.build import build_index
from embednv.index.params import IndexParams
from embednv.index.search import ExactSearch, IndexSearch, open_search
from embednv.index.store import RECORD
from embednv.index_cli import index_command
from embednv.shards import open_shards

app = typer.Typer()
app.command("index")(index_command)
from embednv.cohort_cli import cohort_command  # noqa: E402

app.command("cohort")(cohort_command)
runner = CliRunner()
DIM = 32


@app.callback()
def _root() -> None:
    """A group, as in the main app."""


def invoke(*args, **kwargs):
    return runner.invoke(app, list(map(str, args)), **kwargs)


def clustered(n: int, dim: int = DIM, seed: int = 0, centres_seed: int = 0) -> np.ndarray:
    """Unit vectors in 6 planted clusters around a shared direction (as tests/mapping's `minilm_like`)."""
    centres_rng, rng = np.random.default_rng(centres_seed), np.random.default_rng(seed + 100)
    common, centres = centres_rng.standard_normal(dim), centres_rng.standard_normal((6, dim))
    x = (
        3 * common / np.linalg.norm(common)
        + 4.8 * centres[rng.integers(0, 6, n)] / np.sqrt(dim)
        + 1.8 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def emb(tmp_path):
    n = 3000
    x = clustered(n)
    ids = [f"N-{i:05d}" for i in range(n)]
    return write_shards(tmp_path / "emb", pa.array(ids), x, n_shards=3), ids, x


def test_ivf_recall_against_the_exact_scan(emb):
    """An IVF index on clustered vectors: calibrated nprobe, then recall@50 >= 0.95 on queries it never saw."""
    directory, ids, x = emb
    record, built = build_index(str(directory), IndexParams(kind="ivf"))
    assert built and record["factory"] == "IVF64,Flat" and record["n"] == 3000 and record["dim"] == DIM
    params = record["params"]
    assert record["calibration"]["recall_at_k"] >= 0.97
    assert 1 < params["nprobe"] < params["nlist"]  # an index that reads part of the lists, not a scan in disguise
    shards = open_shards(str(directory))
    search = open_search(str(directory), shards)
    assert isinstance(search, IndexSearch)
    queries = clustered(60, seed=1)  # new vectors from the same clusters
    recalls = []
    for query in queries:
        got = search.nearest(query, 50)
        want_ids, want_cos = brute_force(ids, x, query, 50)
        recalls.append(len(set(got.column("note_id").to_pylist()) & set(want_ids)) / 50)
        assert got.column("rank").to_pylist() == list(range(1, 51))
        # ivf keeps whole vectors: the cosines of the notes it finds are the exact ones
        exact = dict(zip(want_ids, want_cos))
        for note, cos in zip(got.column("note_id").to_pylist(), got.column("cosine").to_pylist()):
            if note in exact:
                assert cos == pytest.approx(exact[note], abs=1e-5)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)


def test_flat_index_answers_near_exactly_as_the_scan(emb, tmp_path):
    directory, ids, x = emb
    result = invoke("index", directory)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("built the flat index of 3,000 vectors (32-d), exact, ")
    for note in ("N-00007", "N-02999"):
        indexed = invoke("cohort", directory, "--near", note, "--k", 25, "--out", tmp_path / "a.parquet")
        assert "answering from the flat index" in indexed.output
        scanned = invoke("cohort", directory, "--near", note, "--k", 25, "--exact", "--out", tmp_path / "b.parquet")
        assert indexed.exit_code == 0 and scanned.exit_code == 0, indexed.output + scanned.output
        a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
        assert a.column("note_id").to_pylist() == b.column("note_id").to_pylist()
        assert note not in a.column("note_id").to_pylist()
        np.testing.assert_allclose(a.column("cosine").to_numpy(), b.column("cosine").to_numpy(), atol=1e-6)
        assert a.column("rank").to_pylist() == list(range(1, 26))


def test_query_with_the_index_equals_the_scan(tmp_path):
    from embednv.api import Embedder

    documents = Embedder(model="minilm", device="cpu")
    ref = documents.ref
    manifest = {
        "model": {"name": "minilm", "kind": ref.kind, "path": ref.path, "revision": ref.revision},
        "dim": ref.dim,
        "max_tokens": ref.max_tokens,
        "id_column": "note_id",
    }
    directory = write_shards(
        tmp_path / "emb", list(range(len(TOPIC_NOTES))), documents.encode(TOPIC_NOTES), 2, manifest=manifest
    )
    assert invoke("index", directory).exit_code == 0
    query = "crushing chest pain, possible heart attack"
    indexed = invoke("cohort", directory, "--query", query, "--k", 4)
    scanned = invoke("cohort", directory, "--query", query, "--k", 4, "--exact")
    assert indexed.exit_code == 0 and scanned.exit_code == 0, indexed.output + scanned.output
    assert "answering from the flat index" in indexed.output and "chest" not in indexed.stderr
    got, want = read_csv(indexed.stdout)[1:], read_csv(scanned.stdout)[1:]
    assert [r[0] for r in got] == [r[0] for r in want] and got[0][0] in ("0", "1")
    np.testing.assert_allclose([float(r[1]) for r in got], [float(r[1]) for r in want], atol=1e-6)


def test_the_index_is_recorded_and_readers_still_see_only_the_shards(emb):
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    directory, ids, _ = emb
    manifest_before = json.loads((directory / MANIFEST).read_text())
    record, _ = build_index(str(directory), IndexParams(kind="ivf"))
    assert sorted(p.name for p in (directory / "_index").iterdir()) == sorted([RECORD, *record["files"].values()])
    manifest = json.loads((directory / MANIFEST).read_text())
    assert {k: v for k, v in manifest.items() if k != "index"} == manifest_before  # every other key kept
    entry = manifest["index"]
    assert entry["library"] == "faiss" and entry["kind"] == "ivf" and entry["n"] == 3000 and entry["dim"] == DIM
    assert entry["built_from"] == {
        "shards": 3,
        "bytes": sum((directory / f"part-{i:05d}.parquet").stat().st_size for i in range(3)),
        "rows": 3000,
        "sha256": record["shards_sha256"],
    }
    assert entry["params"]["nprobe"] == record["params"]["nprobe"] and entry["build_seconds"] > 0

    columns = ["note_id", "embedding", "n_tokens", "n_chunks"]
    frame = pd.read_parquet(directory)
    assert list(frame.columns) == columns and sorted(frame["note_id"]) == ids
    assert ds.dataset(directory, format="parquet").to_table().num_rows == 3000
    for pattern in ("*.parquet", "**/*.parquet"):
        got = duckdb.sql(f"SELECT note_id FROM read_parquet('{directory}/{pattern}')").fetchall()
        assert sorted(r[0] for r in got) == ids, pattern
        assert pl.scan_parquet(f"{directory}/{pattern}").collect().columns == columns


def test_a_stale_index_is_refused_and_exact_still_answers(emb, tmp_path):
    directory, ids, x = emb
    assert invoke("index", directory, "--kind", "ivf").exit_code == 0
    # A later run adds a shard (a resumed or extended run; an update): its notes are not in the index.
    extra = clustered(40, seed=5)
    write_shards(tmp_path / "more", pa.array([f"M-{i}" for i in range(40)]), extra, n_shards=1)
    (tmp_path / "more" / "part-00000.parquet").rename(directory / "part-00003.parquet")
    fix = f"run `embednv index {directory}` to rebuild it, or add --exact to scan every vector"
    stale = f"error: {directory}: the index in _index/ is stale, 1 shard added (part-00003.parquet) since it was built; {fix}"
    assert error_line(invoke("cohort", directory, "--near", "M-3")) == stale
    assert error_line(invoke("cohort", directory, "--query", "chest pain")) == stale  # refused before any model loads

    result = invoke("cohort", directory, "--near", "M-3", "--k", 10, "--exact")
    assert result.exit_code == 0, result.output
    all_ids, all_x = ids + [f"M-{i}" for i in range(40)], np.concatenate([x, extra])
    want, _ = brute_force(all_ids, all_x, extra[3], 10, exclude="M-3")
    assert [r[0] for r in read_csv(result.stdout)[1:]] == want

    # A shard rewritten in place (as `forget` would: same name, other rows) is stale too.
    (directory / "part-00003.parquet").unlink()
    write_shards(tmp_path / "less", pa.array(ids[2000:2999]), x[2000:2999], n_shards=1)
    (tmp_path / "less" / "part-00000.parquet").replace(directory / "part-00002.parquet")
    line = error_line(invoke("cohort", directory, "--near", "N-00001"))
    assert "is stale, 1 shard changed (part-00002.parquet) since it was built; run `embednv index" in line

    # Indexing again rebuilds it, and the answers follow the shards as they are now.
    assert invoke("index", directory).output.strip().splitlines()[-1].startswith("built the ivf index of 2,999 vectors")
    shards = open_shards(str(directory))
    search = open_search(str(directory), shards)
    query = cohort.find_vector(shards, "N-02500", str(directory))
    assert search.nearest(query, 1, exclude="N-02500").column("note_id").to_pylist() == [
        brute_force(ids[:2999], x[:2999], query, 1, exclude="N-02500")[0][0]
    ]


def test_rerun_keeps_a_current_index_and_refusals_are_one_line(emb, tmp_path):
    directory, _, _ = emb
    assert invoke("index", directory).exit_code == 0
    again = invoke("index", directory)
    assert again.output.strip().splitlines()[-1] == (
        f"{directory} already has a current flat index of 3,000 vectors (32-d): nothing to do"
    )
    assert error_line(invoke("index", directory, "--kind", "ivf")) == (
        f"error: {directory} already has a current flat index; add --overwrite to replace it"
    )
    replaced = invoke("index", directory, "--kind", "ivf-sq8", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.suffix for p in (directory / "_index").iterdir()) == [".arrow", ".faiss", ".json"]  # old build gone
    assert error_line(invoke("index", directory, "--kind", "hnsw")) == (
        "error: Invalid --kind 'hnsw'. Valid: auto, flat, ivf, ivf-fp16, ivf-sq8"
    )
    assert error_line(invoke("index", tmp_path / "nowhere")) == f"error: Directory not found: {tmp_path / 'nowhere'}"
    assert error_line(invoke("cohort", directory, "--cluster", 1, "--exact")) == (
        "error: --exact applies to --near and --query"
    )
    # `embed --overwrite` clears the directory: the index built from the old shards goes with them.
    OutputDir(str(directory)).clear()
    assert not (directory / "_index").exists()


def test_without_an_index_cohort_scans(emb):
    directory, _, _ = emb
    assert isinstance(open_search(str(directory), open_shards(str(directory))), ExactSearch)


def test_embed_with_index_builds_it_at_the_end(tmp_path):
    """`embed --index`: the run's shards, then the index recorded in the run's own manifest (other keys kept)."""
    from embednv.cli import app as main_app

    notes = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": [f"n{i}" for i in range(len(TOPIC_NOTES))], "text": TOPIC_NOTES}), notes)
    out = tmp_path / "emb"
    result = runner.invoke(
        main_app, ["embed", str(notes), "--out", str(out), "--executor", "local", "--model", "minilm", "--index"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("embednv: ")]
    assert lines[-2].startswith(f"embedded {len(TOPIC_NOTES)} of {len(TOPIC_NOTES)} notes")
    assert lines[-1].startswith(f"built the flat index of {len(TOPIC_NOTES)} vectors (384-d), exact, ")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["kind"] == "embeddings"
    assert manifest["index"]["built_from"]["rows"] == len(TOPIC_NOTES) and manifest["index"]["kind"] == "flat"
    near = invoke("cohort", out, "--near", "n1", "--k", 2)
    assert near.exit_code == 0 and "answering from the flat index" in near.output, near.output
