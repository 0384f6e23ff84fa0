"""`embednv cohort`: a cluster's ids, the notes nearest a note or a query, exact against brute force."""

from __future__ import annotations

import csv
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
from embednv.cohort_cli import cohort_command
from embednv.directories import MANIFEST
from embednv.io import csv_text, safe_cell
from embednv.mapping.outputs import write_map
from embednv.shards import open_shards

app = typer.Typer()
app.command("cohort")(cohort_command)


@app.callback()
def _root() -> None:
    """A group, as in the main app, so `cohort` is a subcommand."""


runner = CliRunner()
DIM = 24


def invoke(*args, **kwargs):
    return runner.invoke(app, ["cohort", *map(str, args)], **kwargs)


def unit_rows(n, dim=DIM, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=["int", "string"])
def corpus(request, tmp_path):
    n = 301
    ids = list(range(5000, 5000 + n)) if request.param == "int" else [f"N-{i:04d}" for i in range(n)]
    x = unit_rows(n)
    emb = write_shards(
        tmp_path / "emb",
        pa.array(ids, pa.int32() if request.param == "int" else pa.string()),
        x,
        n_shards=4,
        row_group_size=17,
    )
    return {"dir": emb, "ids": ids, "x": x}


@pytest.mark.parametrize("batch_size", [7, 64, 4096])
def test_nearest_equals_brute_force_across_shards_and_batches(corpus, batch_size, monkeypatch):
    ids, x = corpus["ids"], corpus["x"]
    shards = open_shards(str(corpus["dir"]))
    seen = []
    real = cohort.iter_batches

    def spy(*args, **kwargs):  # the scan streams: never more than one batch of vectors at a time
        for ids_batch, vectors in real(*args, **kwargs):
            seen.append(len(vectors))
            yield ids_batch, vectors

    monkeypatch.setattr(cohort, "iter_batches", spy)
    for target in (0, 150, 300):  # first row, a middle shard, the last row
        note = ids[target]
        vector = cohort.find_vector(shards, cohort.parse_id(str(note), cohort.id_type(shards)), "emb", batch_size)
        np.testing.assert_allclose(vector, x[target], rtol=1e-6, atol=1e-7)
        table = cohort.nearest(shards, vector, 25, exclude=note, batch_size=batch_size)
        want_ids, want_cos = brute_force(ids, x, x[target], 25, exclude=note)
        assert table.column_names == ["note_id", "cosine", "rank"]
        assert table.column("note_id").to_pylist() == want_ids
        assert note not in table.column("note_id").to_pylist()
        np.testing.assert_allclose(table.column("cosine").to_numpy(), want_cos, rtol=1e-6, atol=1e-6)
        assert table.column("rank").to_pylist() == list(range(1, 26))
    assert max(seen) <= batch_size and sum(seen) == 3 * len(ids)


def test_ties_keep_shard_order_whatever_the_batch(tmp_path):
    x = np.zeros((40, DIM), np.float32)
    x[:, 3] = 1  # every note the same one-hot vector: 40 cosines of exactly 1.0 (no rounding to break ties)
    shards = open_shards(str(write_shards(tmp_path / "emb", list(range(40)), x, n_shards=3)))
    for batch_size in (3, 8, 100):
        table = cohort.nearest(shards, x[0], 10, exclude=5, batch_size=batch_size)
        assert table.column("note_id").to_pylist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    scores, rows = np.array([0.5, 0.9, 0.5, 0.5, 0.9, 0.1]), np.array([50, 40, 30, 20, 10, 0])
    assert sorted(cohort._top_k(scores, rows, 4)) == [
        1,
        2,
        3,
        4,
    ]  # both 0.9s, then the 0.5s of the earliest rows (20, 30)


def test_k_beyond_the_corpus_returns_every_other_note(tmp_path):
    x = unit_rows(6)
    shards = open_shards(str(write_shards(tmp_path / "emb", list(range(6)), x, n_shards=2)))
    table = cohort.nearest(shards, x[2], 50, exclude=2)
    assert table.column("note_id").to_pylist() == brute_force(list(range(6)), x, x[2], 50, exclude=2)[0]
    assert len(table) == 5


def test_parse_id_follows_the_column_type():
    assert cohort.parse_id("42", pa.int32()) == 42 and cohort.parse_id(" -7 ", pa.int64()) == -7
    assert cohort.parse_id("0042", pa.string()) == "0042"
    for bad in ("4x", "1_000", "", "3.0"):
        with pytest.raises(cohort.CohortError, match="is not an integer, but the id column holds int32"):
            cohort.parse_id(bad, pa.int32())


# ----------------------------------------------------------------------------- the command: --near


def test_near_writes_csv_and_parquet(tmp_path):
    ids, x = list(range(100, 160)), unit_rows(60, seed=3)
    emb = write_shards(tmp_path / "emb", pa.array(ids, pa.int32()), x, n_shards=3)
    want_ids, want_cos = brute_force(ids, x, x[17], 5, exclude=117)

    result = invoke(emb, "--near", 117, "--k", 5, "--out", tmp_path / "out" / "near.csv")
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip().splitlines()[-1] == f"wrote 5 notes nearest note 117 to {tmp_path / 'out' / 'near.csv'}"
    )
    rows = read_csv((tmp_path / "out" / "near.csv").read_text())
    assert rows[0] == ["note_id", "cosine", "rank"]
    assert [int(r[0]) for r in rows[1:]] == want_ids and [int(r[2]) for r in rows[1:]] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], want_cos, rtol=1e-6)
    assert all(np.float32(float(r[1])) == np.float32(c) for r, c in zip(rows[1:], want_cos.astype(np.float32)))

    result = invoke(emb, "--near", 117, "--k", 5, "--out", tmp_path / "near.parquet")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "near.parquet")
    assert table.schema.field("note_id").type == pa.int32() and table.schema.field("cosine").type == pa.float32()
    assert table.column("note_id").to_pylist() == want_ids


def test_near_string_ids_on_stdout(tmp_path):
    ids, x = [f"=cmd|{i}" if i % 2 else f"n{i}" for i in range(30)], unit_rows(30, seed=4)
    emb = write_shards(tmp_path / "emb", ids, x, n_shards=2, id_column="mrn_note")
    result = invoke(emb, "--near", "n4", "--k", 3)
    assert result.exit_code == 0, result.output
    csv_lines = [line for line in result.stdout.splitlines() if not line.startswith("embednv: ")]
    want_ids, _ = brute_force(ids, x, x[4], 3, exclude="n4")
    assert read_csv("\n".join(csv_lines))[0] == ["mrn_note", "cosine", "rank"]
    assert [r[0] for r in read_csv("\n".join(csv_lines))[1:]] == [safe_cell(i) for i in want_ids]


@pytest.mark.parametrize(
    "note, message",
    [
        ("999", "Note id 999 not found in {emb}"),
        ("abc", "Note id 'abc' is not an integer, but the id column holds int64"),
    ],
)
def test_unknown_or_mistyped_id_is_one_line(tmp_path, note, message):
    emb = write_shards(tmp_path / "emb", list(range(10)), unit_rows(10), n_shards=2)
    result = invoke(emb, "--near", note)
    assert (result.exit_code, error_line(result)) == (2, "error: " + message.format(emb=emb))


def test_unknown_string_id_and_an_id_beyond_the_type(tmp_path):
    emb = write_shards(tmp_path / "emb", ["a", "b", "c"], unit_rows(3), n_shards=1)
    assert error_line(invoke(emb, "--near", "zz")) == f"error: Note id 'zz' not found in {emb}"
    emb32 = write_shards(tmp_path / "emb32", pa.array([1, 2], pa.int32()), unit_rows(2), n_shards=1)
    assert error_line(invoke(emb32, "--near", 2**40)) == f"error: Note id {2**40} not found in {emb32}"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--near", "1", "--cluster", "2"],
            "Give exactly one of --cluster, --region, --near, --query (got --cluster and --near)",
        ),
        (
            ["--near", "1", "--query", "x"],
            "Give exactly one of --cluster, --region, --near, --query (got --near and --query)",
        ),
        ([], "Give exactly one of --cluster, --region, --near, --query (got none)"),
        (["--cluster", "1", "--k", "5"], "--k applies to --near and --query; --cluster and --region write every note"),
        (["--near", "1", "--level", "coarse"], "--level applies to --cluster only"),
        (["--near", "1", "--task", "cohort"], "--task applies to --query only"),
        (["--near", "1", "--k", "0"], "--k must be at least 1, got 0"),
        (["--near", "1", "--out", "near.xlsx"], "--out near.xlsx: give a .csv or .parquet file"),
    ],
)
def test_bad_option_combinations_are_one_line(tmp_path, args, message):
    emb = write_shards(tmp_path / "emb", list(range(4)), unit_rows(4), n_shards=1)
    result = invoke(emb, *args)
    assert (result.exit_code, error_line(result)) == (2, f"error: {message}")


def test_missing_and_wrong_directories_are_one_line(tmp_path):
    emb = write_shards(tmp_path / "emb", list(range(4)), unit_rows(4), n_shards=1)
    map_dir = tmp_path / "map"
    map_dir.mkdir()
    write_map(map_dir / "map.parquet", "note_id", pa.array(range(4)), np.zeros((4, 2)), np.array([0, 0, 1, 1]))
    (map_dir / "_manifest.json").write_text(json.dumps({"inputs": {"emb_dir": str(emb), "id_column": "note_id"}}))
    cases = [
        ((tmp_path / "nope", "--near", 1), f"Directory not found: {tmp_path / 'nope'}"),
        ((tmp_path, "--near", 1), f"{tmp_path} has no part-*.parquet shards: not an embedding directory"),
        (
            (map_dir, "--near", 1),
            f"{map_dir} is a map directory; --near needs the embedding directory it was made from ({emb})",
        ),
        (
            (emb, "--cluster", 0),
            f"{emb} is an embedding directory; --cluster needs a map: embednv map {emb} --out MAP_DIR",
        ),
        ((tmp_path, "--cluster", 0), f"{tmp_path} has no map.parquet: not a map directory"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert (result.exit_code, error_line(result)) == (2, f"error: {message}")


# ----------------------------------------------------------------------------- the command: --cluster


@pytest.fixture
def map_dir(tmp_path):
    """A map directory as `embednv map` writes it (its own writer), 4 clusters over 12 notes, string ids."""
    out = tmp_path / "map"
    out.mkdir()
    ids = pa.array([f"id{i}" for i in range(12)])
    labels = np.array([2, 0, 1, 2, 3, 0, 2, 1, 1, 3, 2, 0])
    write_map(out / "map.parquet", "mrn_note", ids, np.random.default_rng(0).standard_normal((12, 2)), labels)
    (out / "_manifest.json").write_text(json.dumps({"tool": "embednv map", "inputs": {"id_column": "mrn_note"}}))
    return out


def test_cluster_ids_exact_csv_and_parquet(map_dir, tmp_path):
    table = cohort.select_cluster(str(map_dir), 2)
    assert table.column_names == ["mrn_note"] and table.column(0).to_pylist() == ["id0", "id3", "id6", "id10"]
    result = invoke(map_dir, "--cluster", 2)
    assert result.exit_code == 0, result.output
    assert result.stdout == '"mrn_note"\n"id0"\n"id3"\n"id6"\n"id10"\n'
    result = invoke(map_dir, "--cluster", 1, "--out", tmp_path / "c1.parquet")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "c1.parquet").column("mrn_note").to_pylist() == ["id2", "id7", "id8"]


def test_coarse_level_and_one_level_maps(map_dir):
    result = invoke(map_dir, "--cluster", 0, "--level", "coarse")
    assert (result.exit_code, error_line(result)) == (
        2,
        f"error: {map_dir} has one level of clusters (map.parquet has no 'group' column): use --level fine",
    )
    table = pq.read_table(map_dir / "map.parquet")
    coarse = pa.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0], pa.int32())
    pq.write_table(table.append_column("group", coarse), map_dir / "map.parquet")
    result = invoke(map_dir, "--cluster", 1, "--level", "coarse")
    assert result.exit_code == 0, result.output
    assert result.stdout == '"mrn_note"\n"id4"\n"id9"\n'
    assert cohort.select_cluster(str(map_dir), 0, "fine").column(0).to_pylist() == ["id1", "id5", "id11"]


def test_unknown_cluster_and_level_are_one_line(map_dir):
    assert (
        error_line(invoke(map_dir, "--cluster", 9))
        == f"error: No cluster 9 at level fine in {map_dir}: clusters are 0..3"
    )
    assert (
        error_line(invoke(map_dir, "--cluster", 1, "--level", "mid"))
        == "error: Invalid --level 'mid'. Valid: fine, coarse"
    )


def test_csv_neutralises_formulas_and_quotes_text(tmp_path):
    hostile = [
        '=HYPERLINK("http://x","y")',
        "+1",
        "-2",
        "@SUM(A1)",
        "\tcmd",
        "\rcmd",
        'a "quoted", comma',
        "line\nbreak",
        "plain",
        "12",
    ]
    table = pa.table(
        {"=id": hostile, "cosine": pa.array([-0.5] * len(hostile), pa.float32()), "rank": range(1, len(hostile) + 1)}
    )
    assert csv_text(table) == (
        '"\'=id","cosine","rank"\n'
        '"\'=HYPERLINK(""http://x"",""y"")",-0.5,1\n'
        '"\'+1",-0.5,2\n'
        '"\'-2",-0.5,3\n'
        '"\'@SUM(A1)",-0.5,4\n'
        '"\'\tcmd",-0.5,5\n'
        '"\'\rcmd",-0.5,6\n'
        '"a ""quoted"", comma",-0.5,7\n'
        '"line\nbreak",-0.5,8\n'
        '"plain",-0.5,9\n'
        '"12",-0.5,10\n'
    )
    map_dir = tmp_path / "map"
    map_dir.mkdir()
    write_map(
        map_dir / "map.parquet", "note_id", pa.array(hostile), np.zeros((len(hostile), 2)), np.zeros(len(hostile))
    )
    result = invoke(map_dir, "--cluster", 0, "--out", tmp_path / "ids.csv")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "ids.csv", newline="") as handle:  # keep the \r inside a quoted cell
        cells = [row[0] for row in list(csv.reader(handle))[1:]]
    assert cells == [safe_cell(h) for h in hostile] and not any(c[0] in "=+-@\t\r" for c in cells)
    # Parquet keeps ids exactly as they are: it is not opened by spreadsheets.
    invoke(map_dir, "--cluster", 0, "--out", tmp_path / "ids.parquet")
    assert pq.read_table(tmp_path / "ids.parquet").column("note_id").to_pylist() == hostile


# ----------------------------------------------------------------------------- the command: --query


@pytest.fixture(scope="module")
def minilm_embedder():
    from embednv.api import Embedder

    return Embedder(model="minilm", device="cpu")


@pytest.fixture
def minilm_emb(tmp_path, minilm_embedder):
    ref = minilm_embedder.ref
    x = minilm_embedder.encode(TOPIC_NOTES)
    manifest = {
        "model": {"name": "minilm", "kind": ref.kind, "path": ref.path, "revision": ref.revision},
        "dim": ref.dim,
        "max_tokens": ref.max_tokens,
        "instruction": "",
        "id_column": "note_id",
    }
    return write_shards(tmp_path / "emb", list(range(len(TOPIC_NOTES))), x, n_shards=2, manifest=manifest), x


def test_query_matches_brute_force_with_embedders_own_vector(minilm_emb, minilm_embedder, tmp_path):
    emb, x = minilm_emb
    query = "crushing chest pain, possible heart attack"
    want_ids, want_cos = brute_force(list(range(len(TOPIC_NOTES))), x, minilm_embedder.encode([query])[0], 3)
    result = invoke(emb, "--query", query, "--k", 3, "--out", tmp_path / "q.csv")
    assert result.exit_code == 0, result.output
    rows = read_csv((tmp_path / "q.csv").read_text())[1:]
    assert [int(r[0]) for r in rows] == want_ids and want_ids[0] in (0, 1)
    np.testing.assert_allclose([float(r[1]) for r in rows], want_cos, rtol=1e-5)
    assert query not in result.output and "chest" not in result.output  # the query is never logged
    assert result.output.strip().splitlines()[-1] == f"wrote 3 notes nearest the query to {tmp_path / 'q.csv'}"

    result = invoke(emb, "--query", "-", "--k", 3, input=query)  # from stdin, out of argv
    assert result.exit_code == 0, result.output
    assert [int(r[0]) for r in read_csv(result.stdout)[1:]] == want_ids


def test_query_refusals_are_one_line(minilm_emb, tmp_path):
    emb, _ = minilm_emb
    assert (
        error_line(invoke(emb, "--query", "x", "--task", "cohort"))
        == "error: --task is for NV-Embed-v2 queries; minilm takes no instruction"
    )
    assert error_line(invoke(emb, "--query", "  ")) == "error: --query is empty"
    manifest = json.loads((emb / MANIFEST).read_text())
    (emb / MANIFEST).write_text(json.dumps({**manifest, "model": {**manifest["model"], "revision": "sha256:0000"}}))
    line = error_line(invoke(emb, "--query", "x"))
    assert line.startswith(f"error: {emb} was embedded with minilm revision sha256:0000, the copy here is sha256:")
    gone = tmp_path / "gone-checkpoint"
    (emb / MANIFEST).write_text(json.dumps({**manifest, "model": {"name": str(gone), "kind": "nvembed"}}))
    line = error_line(invoke(emb, "--query", "x"))
    assert line.startswith(f"error: Cannot load {gone}, the model that embedded {emb}, here: ")
    (emb / MANIFEST).unlink()
    assert (
        error_line(invoke(emb, "--query", "x"))
        == f"error: {emb} has no _manifest.json: --query needs it to know which model embedded the notes"
    )


def test_nvembed_query_gets_the_retrieval_instruction_by_default(tmp_path):
    from nvembed_fixtures import write_tiny_nvembed_checkpoint

    from embednv.api import Embedder

    checkpoint = write_tiny_nvembed_checkpoint(tmp_path / "ckpt", seed=1, shards=1)
    documents = Embedder(model=str(checkpoint), device="cpu")
    emb = write_shards(
        tmp_path / "emb",
        list(range(3)),
        documents.encode(TOPIC_NOTES[:3]),
        n_shards=1,
        manifest={"model": {"name": documents.ref.name, "kind": "nvembed", "revision": documents.ref.revision}},
    )
    query = "chest pain"
    got = cohort.query_vector(str(emb), query, device="cpu")
    preset = Embedder(model=str(checkpoint), device="cpu", task="similar-notes").encode([query])[0]
    np.testing.assert_allclose(got, preset, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, documents.encode([query])[0], atol=1e-3)  # the instruction changes the vector
    free = cohort.query_vector(str(emb), query, task="Find notes about the same organ system", device="cpu")
    want = Embedder(model=str(checkpoint), device="cpu", task="Find notes about the same organ system").encode([query])[
        0
    ]
    np.testing.assert_allclose(free, want, rtol=1e-5, atol=1e-6)
