"""The embedding job end to end with the real bundled model: on the local executor, and side by side with Ray.

Everything here but the executor comparison runs without Ray (`executor="local"`, the same stages
in-process); what only Ray does (actors, retries, a killed worker) is tested in test_reliability.py.
"""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from minilm_reference import direct_minilm

from embednv.embed.config import EmbedConfig
from embednv.embed.run import run_embed
from embednv.errors import OutputConflict
from embednv.sample_corpus import write_sample_corpus

BAD_ROWS = [(9001, None), (9002, "   "), (None, "orphan note"), (3, "a duplicate of note 3")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """60 synthetic notes plus four bad rows, as one Parquet file."""
    folder = tmp_path_factory.mktemp("corpus")
    write_sample_corpus(str(folder / "sample.parquet"), 60, seed=1)
    good = pq.read_table(folder / "sample.parquet").select(["note_id", "text"])
    bad = pa.table(
        {
            "note_id": pa.array([r[0] for r in BAD_ROWS], pa.int64()),
            "text": pa.array([r[1] for r in BAD_ROWS], pa.large_string()),
        }
    )
    path = folder / "notes.parquet"
    pq.write_table(pa.concat_tables([good, bad]), path, row_group_size=25)
    return path


def config_for(inputs, out, **overrides):
    settings = dict(
        inputs=tuple(str(i) for i in inputs),
        out=str(out),
        model="minilm",
        max_tokens=128,
        rows_per_shard=20,
        window_rows=64,
        executor="local",
    )
    settings.update(overrides)
    return EmbedConfig(**settings)


def read_output(out):
    shards = pads.dataset(str(out), format="parquet").to_table()  # ignores _-prefixed files
    errors = pq.read_table(os.path.join(out, "_errors", "errors.parquet"))
    return shards, errors, json.loads(open(os.path.join(out, "_manifest.json")).read())


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "emb"
    summary = run_embed(config_for([corpus], out))
    return out, summary


def test_every_id_exactly_once_in_shards_or_errors(finished, corpus):
    out, summary = finished
    shards, errors, manifest = read_output(out)
    embedded = shards.column("note_id").to_pylist()
    assert sorted(embedded) == list(range(1, 61))  # each good note once, duplicate 3 only once
    assert sorted(os.listdir(out)) == ["_SUCCESS", "_errors", "_manifest.json"] + [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    assert errors.column_names == ["note_id", "file", "row", "reason"]
    assert errors.to_pylist() == [
        {"note_id": 9001, "file": str(corpus), "row": 60, "reason": "text is null"},
        {"note_id": 9002, "file": str(corpus), "row": 61, "reason": "text is empty or whitespace only"},
        {"note_id": None, "file": str(corpus), "row": 62, "reason": "id is null"},
        {"note_id": 3, "file": str(corpus), "row": 63, "reason": "duplicate id (its first occurrence is kept)"},
    ]
    assert manifest["rows_in"] == 64 == manifest["rows_embedded"] + manifest["rows_errored"]
    assert (manifest["rows_embedded"], manifest["rows_errored"]) == (60, 4)
    assert manifest["status"] == "complete" and manifest["dim"] == 384 and manifest["model"]["name"] == "minilm"
    assert manifest["padding_efficiency"] >= 0.9
    assert summary.embedded == 60 and "padding efficiency" in summary.line()


def test_schema_and_embeddings_match_a_direct_model_call(finished, corpus):
    out, _ = finished
    shards, _, _ = read_output(out)
    assert shards.schema.field("note_id").type == pa.int64()
    assert shards.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    texts = {}
    for note_id, text in zip(*pq.read_table(corpus).to_pydict().values()):
        texts.setdefault(note_id, text)  # the first occurrence is embedded; the duplicate of note 3 is an error row
    rows = [r for r in shards.to_pylist() if r["n_chunks"] == 1][:8]
    assert len(rows) == 8
    for row, expected in zip(rows, direct_minilm([texts[r["note_id"]] for r in rows])):
        vector = np.asarray(row["embedding"], np.float32)
        assert np.isfinite(vector).all() and np.isclose(np.linalg.norm(vector), 1, atol=1e-5)
        assert float(np.dot(vector, expected)) >= 0.9999
    long_rows = [r for r in shards.to_pylist() if r["n_tokens"] > 128]
    assert long_rows and all(r["n_chunks"] > 1 for r in long_rows)


def test_rerun_of_a_finished_output_does_nothing(finished, corpus):
    out, _ = finished
    before = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    summary = run_embed(config_for([corpus], out))
    assert summary.already_complete and "nothing to do" in summary.line()
    assert {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)} == before


def test_changed_options_are_refused_unless_overwrite(finished, corpus):
    out, _ = finished
    with pytest.raises(OutputConflict, match="instruction changed"):
        run_embed(config_for([corpus], out, instruction="Instruct: x\nQuery: "))


def test_resume_rewrites_only_missing_shards_identically(finished, corpus, tmp_path):
    out = tmp_path / "emb"
    shutil.copytree(finished[0], out)  # a finished run, then a shard lost
    original = pq.read_table(out / "part-00002.parquet")
    keep = {n: os.stat(out / n).st_mtime_ns for n in ("part-00000.parquet", "part-00001.parquet")}
    os.remove(out / "part-00002.parquet")
    os.remove(out / "_SUCCESS")
    run_embed(config_for([corpus], out))
    assert {n: os.stat(out / n).st_mtime_ns for n in keep} == keep
    resumed = pq.read_table(out / "part-00002.parquet")
    assert resumed.column("note_id").equals(original.column("note_id"))
    assert np.allclose(
        np.stack(resumed.column("embedding").to_numpy(zero_copy_only=False)),
        np.stack(original.column("embedding").to_numpy(zero_copy_only=False)),
        atol=1e-6,
    )
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_embedded"] + manifest["rows_errored"] == 64


def test_string_ids_from_jsonl_and_csv_over_file_uris(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"doc": f"n{i}", "body": f"Patient {i} reports cough."}) for i in range(5)) + "\n"
    )
    csv = tmp_path / "b.csv"
    csv.write_text('doc,body\nn5,"Fever.\nChills."\nn6,Rash on the arm.\n')
    out = tmp_path / "emb"
    run_embed(config_for([f"file://{jsonl}", f"file://{csv}"], f"file://{out}", id_column="doc", text_column="body"))
    shards, errors, manifest = read_output(str(out))
    assert shards.schema.field("doc").type == pa.string()
    assert sorted(shards.column("doc").to_pylist()) == [f"n{i}" for i in range(7)]
    assert len(errors) == 0 and errors.schema.field("doc").type == pa.string()
    assert [i["uri"] for i in manifest["inputs"]] == [f"file://{jsonl}", f"file://{csv}"]


def test_int32_ids_keep_their_type(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"note_id": pa.array([7, 8], pa.int32()), "text": ["Cough.", "Fever."]}), path)
    run_embed(config_for([path], tmp_path / "emb"))
    assert pq.read_table(tmp_path / "emb" / "part-00000.parquet").schema.field("note_id").type == pa.int32()


def test_one_read_task_per_parquet_shard_and_per_text_file(tmp_path):
    # read_datasource gets override_num_blocks=num_tasks(): it must match the tasks made.
    from embednv.embed.plan import plan_inputs
    from embednv.embed.ray_job import NotesDatasource

    pq.write_table(pa.table({"note_id": range(5), "text": ["a"] * 5}), tmp_path / "a.parquet", row_group_size=2)
    (tmp_path / "b.csv").write_text("note_id,text\n" + "".join(f"{i},b\n" for i in range(10, 15)))
    plan = plan_inputs([str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")], "note_id", "text", 2, False, "int")
    source = NotesDatasource(plan, plan.shards, "note_id", "text", "int")
    tasks = source.get_read_tasks(1)
    assert source.num_tasks() == len(tasks) == 3 + 1  # 3 Parquet shards of <= 2 rows, the CSV streamed once
    assert sum(t.metadata.num_rows for t in tasks) == 10


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_ids_with_leading_zeros_come_back_exactly_as_written(tmp_path, fmt):
    ids = ["007", "7", "0012345", "12345"]
    path = tmp_path / f"notes.{fmt}"
    if fmt == "csv":
        path.write_text("note_id,text\n" + "".join(f"{i},Patient {n} reports cough.\n" for n, i in enumerate(ids)))
    else:
        path.write_text(
            "".join(json.dumps({"note_id": i, "text": f"Patient {n} reports cough."}) + "\n" for n, i in enumerate(ids))
        )
    summary = run_embed(config_for([path], tmp_path / "emb"))
    shards, errors, manifest = read_output(str(tmp_path / "emb"))
    assert shards.column("note_id").to_pylist() == ids and len(errors) == 0
    assert summary.embedded == 4 and manifest["id_type"] == "string"
    texts = [f"Patient {n} reports cough." for n in range(4)]
    np.testing.assert_allclose(
        np.stack(shards.column("embedding").to_numpy(zero_copy_only=False)), np.stack(direct_minilm(texts)), atol=1e-5
    )


def test_one_row_of_invalid_utf8_in_parquet_is_listed_and_the_rest_embedded(tmp_path):
    path = tmp_path / "spark_export.parquet"
    cells = pa.array([b"Cough for two weeks.", b"Fever \xc3\x28 and chills.", b"Rash on the arm."], pa.binary())
    pq.write_table(pa.table({"note_id": ["a", "b", "c"], "text": cells.view(pa.string())}), path)
    summary = run_embed(config_for([path], tmp_path / "emb"))
    shards, errors, _ = read_output(str(tmp_path / "emb"))
    assert shards.column("note_id").to_pylist() == ["a", "c"]
    assert errors.to_pylist() == [
        {"note_id": "b", "file": str(path), "row": 1, "reason": "invalid UTF-8 in text at byte 6"}
    ]
    assert (summary.embedded, summary.errored) == (2, 1)


def test_embed_never_writes_into_a_map(finished, corpus, tmp_path):
    from embednv.mapping.run import MapConfig, run_map
    from embednv.mapping.tsne_params import TSNEParams

    out = tmp_path / "emb"  # a copy: the map records itself in the manifest of the embeddings it reads
    shutil.copytree(finished[0], out)
    map_dir = tmp_path / "map"
    fast = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)  # any real map will do
    run_map(MapConfig(emb_dir=str(out), out_dir=map_dir, clusters=3, placement="local", tsne=fast))
    before = {p.name: p.read_bytes() for p in map_dir.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(OutputConflict, match="holds a map"):
            run_embed(config_for([corpus], map_dir, overwrite=overwrite))
    assert {p.name: p.read_bytes() for p in map_dir.iterdir()} == before


def test_the_local_executor_writes_what_the_ray_executor_writes(ray_local, finished, corpus, tmp_path):
    local_out, _ = finished
    ray_out = tmp_path / "emb"
    summary = run_embed(config_for([corpus], ray_out, executor="ray"))
    ray_shards, ray_errors, ray_manifest = read_output(str(ray_out))
    shards, errors, manifest = read_output(str(local_out))
    assert sorted(os.listdir(local_out)) == sorted(os.listdir(ray_out))
    assert shards.column("note_id").to_pylist() == ray_shards.column("note_id").to_pylist()
    assert shards.schema == ray_shards.schema and errors.equals(ray_errors)
    ours, theirs = (np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (shards, ray_shards))
    assert np.min(np.sum(ours * theirs, axis=1)) >= 0.9999
    assert shards.drop_columns(["embedding"]).equals(ray_shards.drop_columns(["embedding"]))
    # Timing, and how windows were cut into micro-batches (Ray's windows may span shards): not the output.
    varying = {"started_at", "finished_at", "seconds_this_run", "notes_per_second", "padding_efficiency", "config",
               "stage_seconds"}  # fmt: skip
    assert {k: v for k, v in manifest.items() if k not in varying} == {
        k: v for k, v in ray_manifest.items() if k not in varying
    }
    assert (manifest["config"]["executor"], ray_manifest["config"]["executor"]) == ("local", "ray")
    assert summary.embedded == 60


def test_the_local_executor_reports_seconds_per_stage(finished):
    """What a benchmark needs to split a run's time (the model's share for tokens/s): summary and manifest."""
    out, summary = finished  # the local executor's run
    stages = summary.stage_seconds
    assert list(stages) == ["load", "read", "tokenize", "embed", "write"]
    assert all(v >= 0 for v in stages.values()) and stages["load"] > 0 and stages["embed"] > 0
    assert sum(stages.values()) <= summary.seconds
    _, _, manifest = read_output(str(out))
    assert manifest["stage_seconds"] == stages


def test_the_local_executor_refuses_what_needs_a_cluster(tmp_path):
    from embednv.errors import ConfigError

    with pytest.raises(ConfigError, match="--address, --num-gpus need the Ray executor"):
        run_embed(config_for([tmp_path / "x.parquet"], tmp_path / "emb", executor="local", address="auto", num_gpus=2))
