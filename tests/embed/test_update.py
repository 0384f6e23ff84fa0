"""`embed --update`: only new and changed notes are embedded, in place, and every read sees one row per note."""

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from embednv import Embedder
from embednv.columns import TEXT_HASH
from embednv.embed.config import EmbedConfig
from embednv.embed.run import run_embed
from embednv.errors import OutputConflict
from embednv.index.build import build_index
from embednv.sample_corpus import write_sample_corpus

SETTINGS = dict(model="minilm", max_tokens=128, rows_per_shard=20, window_rows=32, executor="local")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """60 sample notes (ids 1-60) embedded once in 3 shards of 20: (input table, embeddings directory)."""
    folder = tmp_path_factory.mktemp("update-base")
    write_sample_corpus(str(folder / "sample.parquet"), 60, seed=1)
    notes = pq.read_table(folder / "sample.parquet").select(["note_id", "text"])
    pq.write_table(notes, folder / "notes.parquet")
    run_embed(EmbedConfig(inputs=(str(folder / "notes.parquet"),), out=str(folder / "emb"), **SETTINGS))
    return notes, folder / "emb"


def copy_of(emb, tmp_path):
    out = tmp_path / "emb"
    shutil.copytree(emb, out)
    return out


def notes_file(path, ids, texts):
    pq.write_table(pa.table({"note_id": pa.array(ids, pa.int64()), "text": pa.array(texts, pa.large_string())}), path)
    return path


def updated_input(notes, path):
    """Notes 3 and 17 changed (both in shard 0), 1001 and 1002 new, and two later duplicates whose text must be ignored."""
    ids, texts = notes.column("note_id").to_pylist(), notes.column("text").to_pylist()
    texts[2] += " Addendum: pain resolved."  # note 3
    texts[16] = "Corrected note: no acute distress."  # note 17
    ids += [1001, 5, 1002, 1001]
    texts += ["New patient with a dry cough for two weeks.", "a later duplicate of 5", "Ankle sprain.", "duplicate"]
    return notes_file(path, ids, texts), dict(zip(ids[::-1], texts[::-1]))  # first occurrence wins


def by_id(out) -> dict:
    table = pads.dataset(str(out), format="parquet").to_table()
    ids = table.column("note_id").to_pylist()
    assert len(ids) == len(set(ids)), "an id appears twice"
    return dict(zip(ids, np.stack(table.column("embedding").to_numpy(zero_copy_only=False))))


def shard_files(out) -> dict:
    return {n: (out / n).read_bytes() for n in sorted(os.listdir(out)) if n.startswith("part-")}


def test_update_embeds_new_and_changed_notes_only_and_keeps_the_rest_bit_identical(base, tmp_path, caplog):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    before_vectors, before_files = by_id(out), shard_files(out)
    path, current = updated_input(notes, tmp_path / "export-2.parquet")
    build_index(str(out))  # a cohort index of the shards as they were
    caplog.clear()  # build_index's own lines reach the capture when an earlier test left embednv at INFO

    with caplog.at_level(logging.INFO):
        summary = run_embed(EmbedConfig(inputs=(str(path),), out=str(out), update=True, **SETTINGS))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("embednv")]
    assert (
        lines[0]
        == "update: 2 new, 2 changed, 58 unchanged notes (4 to embed); 2 rows cannot be embedded (0 of them replace a vector)"
    )
    assert any("model loaded" in line for line in lines[1:])
    assert f"the cohort index in _index/ is now stale: run `embednv index {out}` to rebuild it" in lines

    after = by_id(out)
    assert sorted(after) == list(range(1, 61)) + [1001, 1002]
    fresh = [3, 17, 1001, 1002]
    direct = Embedder(model="minilm", max_tokens=128).encode([current[i] for i in fresh])
    for note_id, vector in zip(fresh, direct):
        assert np.abs(after[note_id] - vector).max() < 1e-5
    assert np.abs(after[3] - before_vectors[3]).max() > 1e-3  # really replaced
    for note_id in set(range(1, 61)) - {3, 17}:
        assert after[note_id].tobytes() == before_vectors[note_id].tobytes()
    files = shard_files(out)
    assert files["part-00001.parquet"] == before_files["part-00001.parquet"]  # no row of theirs changed
    assert files["part-00002.parquet"] == before_files["part-00002.parquet"]
    assert files["part-00000.parquet"] != before_files["part-00000.parquet"]
    assert pq.read_table(out / "part-00003.parquet").column("note_id").to_pylist() == [1001, 1002]
    shards = pads.dataset(str(out), format="parquet").to_table().to_pydict()
    hashes = dict(zip(shards["note_id"], shards[TEXT_HASH]))  # the hash of the text each vector is of
    assert all(hashes[i] == hashlib.sha256(current[i].encode()).hexdigest() for i in [1, 3, 17, 1001])

    errors = pq.read_table(out / "_errors" / "errors.parquet").to_pydict()
    assert errors["note_id"] == [5, 1001] and errors["row"] == [61, 63] and set(errors["file"]) == {str(path)}
    record = json.loads((out / "_manifest.json").read_text())["updates"][-1]
    assert {k: record[k] for k in ("new", "changed", "unchanged", "embedded", "errors", "new_shards")} == dict(
        new=2, changed=2, unchanged=58, embedded=4, errors=2, new_shards=1
    )
    assert record["shards_rewritten"] == 1 and record["bytes_rewritten"] == (out / "part-00000.parquet").stat().st_size
    assert summary.update == record and summary.embedded == 62

    files = shard_files(out)  # the same command again: nothing left to do, nothing rewritten
    again = run_embed(EmbedConfig(inputs=(str(path),), out=str(out), update=True, **SETTINGS))
    assert again.update["embedded"] == 0 and again.update["unchanged"] == 62 and shard_files(out) == files


def test_an_error_row_that_now_embeds_leaves_the_errors_file_and_a_withdrawn_text_takes_its_vector(base, tmp_path):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    first = notes_file(tmp_path / "a.parquet", [2001, 7], ["   ", notes.column("text")[6].as_py()])
    run_embed(EmbedConfig(inputs=(str(first),), out=str(out), update=True, **SETTINGS))
    assert pq.read_table(out / "_errors" / "errors.parquet").column("note_id").to_pylist() == [2001]

    second = notes_file(tmp_path / "b.parquet", [2001, 7], ["Now with text: wrist fracture.", None])
    summary = run_embed(EmbedConfig(inputs=(str(second),), out=str(out), update=True, **SETTINGS))
    assert summary.update["withdrawn"] == 1
    errors = pq.read_table(out / "_errors" / "errors.parquet").to_pydict()
    assert errors["note_id"] == [7] and errors["reason"] == ["text is null"]
    assert sorted(by_id(out)) == [i for i in range(1, 61) if i != 7] + [2001]


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(max_tokens=64), "max_tokens"),
        (dict(instruction="query: "), "instruction"),
        (dict(dtype="float16"), "dtype"),
        (dict(id_column="nid"), "id_column"),
    ],
)
def test_update_refuses_other_settings_in_one_line(base, tmp_path, change, field):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    path = tmp_path / "in.parquet"
    pq.write_table(notes.rename_columns(["nid", "text"]) if "id_column" in change else notes, path)
    with pytest.raises(OutputConflict, match=f"another {field};") as refused:
        run_embed(EmbedConfig(inputs=(str(path),), out=str(out), update=True, **{**SETTINGS, **change}))
    assert "\n" not in str(refused.value)


def test_update_refuses_a_directory_written_before_the_text_hash(base, tmp_path):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    for name in shard_files(out):
        pq.write_table(pq.read_table(out / name).drop_columns([TEXT_HASH]), out / name)
    with pytest.raises(OutputConflict, match="no text_sha256 column .*re-run with --overwrite"):
        run_embed(EmbedConfig(inputs=(str(emb.parent / "notes.parquet"),), out=str(out), update=True, **SETTINGS))


def test_update_into_an_absent_directory_is_a_first_run(base, tmp_path):
    notes, emb = base
    out = tmp_path / "fresh"
    summary = run_embed(EmbedConfig(inputs=(str(emb.parent / "notes.parquet"),), out=str(out), update=True, **SETTINGS))
    assert summary.update is None and summary.embedded == 60
    got, expected = by_id(out), by_id(emb)  # the same notes and vectors as the run without --update
    assert sorted(got) == sorted(expected) and all(np.abs(got[i] - expected[i]).max() < 1e-6 for i in got)


KILL_AFTER = """
import os, signal, sys
from embednv.directories import OutputDir
from embednv.embed.config import EmbedConfig
from embednv.embed.run import run_embed

written, write = [], OutputDir.write_table
def write_then_die(self, name, table, metadata=None):
    write(self, name, table, metadata)
    written.append(name)
    if name.startswith("part-") and len(written) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # a lost node, right after this file was renamed into place
OutputDir.write_table = write_then_die
run_embed(EmbedConfig(inputs=(sys.argv[1],), out=sys.argv[2], update=True, model="minilm", max_tokens=128,
                      rows_per_shard=5, window_rows=32, executor="local"))
"""


def plain_reads(out) -> list[dict]:
    """The directory as every plain reader sees it: {id: vector} each, after checking ids are unique."""
    import duckdb
    import pandas as pd
    import polars as pl

    tables = {
        "pyarrow.dataset": pads.dataset(str(out), format="parquet").to_table().to_pandas(),
        "pandas": pd.read_parquet(out),
        "duckdb": duckdb.sql(f"SELECT note_id, embedding FROM read_parquet('{out}/*.parquet')").df(),
        "polars": pl.read_parquet(f"{out}/*.parquet").to_pandas(),
    }
    seen = []
    for reader, frame in tables.items():
        ids = frame["note_id"].tolist()
        assert len(ids) == len(set(ids)), f"{reader} sees an id twice"
        seen.append({i: np.asarray(v, np.float32) for i, v in zip(ids, frame["embedding"])})
    return seen


def test_sigkill_during_an_update_leaves_one_row_per_note_and_a_rerun_finishes(base, tmp_path):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    old = by_id(out)
    ids, texts = notes.column("note_id").to_pylist(), notes.column("text").to_pylist()
    texts[0], texts[45] = "Changed: chest pain.", "Changed: knee effusion."  # notes 1 (shard 0) and 46 (shard 2)
    new_ids = list(range(3001, 3013))  # 12 new notes: shards of 5, 5 and 2 rows
    current = dict(zip(ids + new_ids, texts + [f"New note {i}: follow-up visit." for i in new_ids]))
    path = notes_file(tmp_path / "in.parquet", list(current), list(current.values()))
    # Killed after the third new shard and the first of the two rewritten holders.
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, str(path), str(out), "4"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]

    direct = dict(
        zip([1, 46, *new_ids], Embedder(model="minilm", max_tokens=128).encode([current[i] for i in [1, 46, *new_ids]]))
    )
    for seen in plain_reads(out):
        assert sorted(seen) == sorted(current)  # one row per current note, in every reader
        assert sum(np.abs(seen[i] - direct[i]).max() < 1e-5 for i in (1, 46)) == 1  # one holder rewritten
        assert all(np.abs(seen[i] - old[i]).max() < 1e-6 or np.abs(seen[i] - direct[i]).max() < 1e-5 for i in (1, 46))

    rerun = run_embed(EmbedConfig(inputs=(str(path),), out=str(out), update=True, **{**SETTINGS, "rows_per_shard": 5}))
    assert rerun.update["embedded"] == 1 and rerun.update["new"] == 0 and rerun.update["changed"] == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    for seen in plain_reads(out):
        assert sorted(seen) == sorted(current)
        for note_id, vector in seen.items():
            expected = direct.get(note_id, old.get(note_id))
            assert np.abs(vector - expected).max() < 1e-5, note_id


def test_an_update_under_ray_writes_what_the_local_executor_writes(base, tmp_path, ray_local):
    notes, emb = base
    path, _ = updated_input(notes, tmp_path / "export-2.parquet")
    outs = {}
    for executor in ("local", "ray"):
        outs[executor] = copy_of(emb, tmp_path / executor)
        summary = run_embed(
            EmbedConfig(inputs=(str(path),), out=str(outs[executor]), update=True, **{**SETTINGS, "executor": executor})
        )
        assert (summary.update["new"], summary.update["changed"], summary.update["embedded"]) == (2, 2, 4)
    local, ray = by_id(outs["local"]), by_id(outs["ray"])
    assert sorted(local) == sorted(ray) == list(range(1, 61)) + [1001, 1002]
    assert max(float(np.abs(local[i] - ray[i]).max()) for i in local) < 1e-5
    assert pq.read_table(outs["ray"] / "_errors" / "errors.parquet").equals(
        pq.read_table(outs["local"] / "_errors" / "errors.parquet")
    )


def test_the_command_line_takes_update_and_refuses_it_with_overwrite(base, tmp_path):
    notes, emb = base
    out = copy_of(emb, tmp_path)
    path, _ = updated_input(notes, tmp_path / "export-2.parquet")
    args = [sys.executable, "-m", "embednv.cli", "embed", str(path), "--out", str(out), "--model", "minilm"]
    both = subprocess.run([*args, "--update", "--overwrite"], capture_output=True, text=True)
    assert both.returncode == 2 and both.stderr.strip().splitlines() == [
        "error: Give --update or --overwrite, not both"
    ]
    other = subprocess.run(
        [*args, "--update", "--max-tokens", "64", "--executor", "local"], capture_output=True, text=True
    )
    assert other.returncode == 2 and "was embedded with another max_tokens;" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
