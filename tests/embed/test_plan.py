"""Planning (embed/plan.py): input discovery, file-level checks before any model work, shards, duplicates."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from note_files import rows_of, write_parquet

from embednv.columns import ERROR
from embednv.embed.plan import expand_inputs, plan_inputs
from embednv.errors import InputError


def test_directories_globs_and_file_uris_expand_sorted(tmp_path):
    (tmp_path / "d").mkdir()
    a = write_parquet(tmp_path / "d" / "b.parquet", [1], ["x"])
    b = write_parquet(tmp_path / "d" / "a.parquet", [2], ["y"])
    (tmp_path / "d" / "_SUCCESS").write_text("")
    assert [f.uri for f in expand_inputs([str(tmp_path / "d")])] == [b, a]
    assert [f.uri for f in expand_inputs([str(tmp_path / "d" / "*.parquet")])] == [b, a]
    assert [f.uri for f in expand_inputs([f"file://{a}"])] == [f"file://{a}"]


def test_shards_cut_each_file_into_fixed_row_ranges(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", list(range(7)), ["t"] * 7)
    b = write_parquet(tmp_path / "b.parquet", list(range(7, 10)), ["t"] * 3)
    plan = plan_inputs([a, b], "note_id", "text", rows_per_shard=3)
    assert [(s.index, s.file, s.start, s.stop) for s in plan.shards] == [
        (0, 0, 0, 3),
        (1, 0, 3, 6),
        (2, 0, 6, 7),
        (3, 1, 0, 3),
    ]
    assert plan.n_rows == 10


def test_duplicates_keep_the_first_occurrence_across_files(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", [5, 6], ["a", "b"])
    b = write_parquet(tmp_path / "b.parquet", [6, 7], ["c", "d"])
    rows = rows_of(plan_inputs([a, b], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR] is None) for r in rows] == [(5, True), (6, True), (6, False), (7, True)]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: str(d / "missing.parquet"), "missing.parquet: no such file or directory"),
        (lambda d: (d / "notes.txt").write_text("x") and str(d / "notes.txt"), "unsupported file type .txt"),
        (
            lambda d: (d / "bad.parquet").write_bytes(b"not parquet") and str(d / "bad.parquet"),
            "bad.parquet: not a readable Parquet file",
        ),
        (
            lambda d: write_parquet(
                d / "a.parquet",
                [],
                [],
            ),
            "no rows to embed",
        ),
    ],
)
def test_file_level_problems_fail_fast_naming_the_file(tmp_path, make, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        plan_inputs([make(tmp_path)], "note_id", "text", 10)


def test_missing_column_names_file_and_column(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", [1], ["x"])
    with pytest.raises(InputError, match=r"a\.parquet: no column 'body'"):
        plan_inputs([path], "note_id", "body", 10)


def test_id_types_must_agree_across_files(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", [1], ["x"])
    b = tmp_path / "b.parquet"
    pq.write_table(pa.table({"note_id": ["1"], "text": ["y"]}), b)
    with pytest.raises(InputError, match="different types across files"):
        plan_inputs([a, str(b)], "note_id", "text", 10)


def test_skip_bad_files_lists_them_and_keeps_the_rest(tmp_path):
    good = write_parquet(tmp_path / "a.parquet", [1], ["x"])
    (tmp_path / "b.parquet").write_bytes(b"garbage")
    plan = plan_inputs([str(tmp_path)], "note_id", "text", 10, skip_bad_files=True)
    assert [f.uri for f in plan.files] == [good]
    assert plan.skipped_files[0][0].endswith("b.parquet")


# What users bring: exports written by other tools, taken as they are.


@pytest.mark.parametrize(
    "values, type_name",
    [
        (pa.array([3, 4]), "int64"),
        (pa.array([{"a": "x"}, {"a": "y"}]), "struct<a: string>"),
        (pa.array([["x"], ["y"]]), "list<element: string>"),
    ],
)
def test_a_text_column_that_is_not_text_is_refused_while_planning(tmp_path, values, type_name):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"note_id": [1, 2], "body": values}), path)
    with pytest.raises(InputError) as error:
        plan_inputs([str(path)], "note_id", "body", 10)
    assert str(error.value) == f"{path}: the text column 'body' is {type_name}, not text (string or binary)"


def test_a_jsonl_text_field_that_never_holds_text_is_refused_while_planning(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"note_id": "a", "text": 3}\n{"note_id": "b", "text": [1]}\n{"note_id": "c", "text": null}\n')
    with pytest.raises(InputError, match=r"a\.jsonl: the text column 'text' holds int, list values, not text"):
        plan_inputs([str(path)], "note_id", "text", 10)


@pytest.mark.parametrize(
    "given, out",
    [
        ("notes", "notes/emb"),  # a directory input is read recursively
        ("notes", "notes"),
        ("notes/*/*.parquet", "notes/emb"),
        ("notes/**/*.parquet", "notes/deep/emb"),
        ("notes/a.parquet", "notes"),  # the output would hold the input
        ("file://{root}/notes", "notes/emb"),
    ],
)
def test_an_output_that_an_input_would_read_is_refused(tmp_path, given, out):
    from embednv.embed.plan import check_output_apart
    from embednv.errors import OutputConflict

    given = given.format(root=tmp_path) if given.startswith("file://") else str(tmp_path / given)
    with pytest.raises(OutputConflict, match="--out .* (lies inside|holds) the input"):
        check_output_apart(str(tmp_path / out), [given])


@pytest.mark.parametrize(
    "given, out", [("notes", "emb"), ("notes/*.parquet", "notes/emb"), ("notes/a.parquet", "notes2")]
)
def test_an_output_beside_the_inputs_is_accepted(tmp_path, given, out):
    from embednv.embed.plan import check_output_apart

    check_output_apart(str(tmp_path / out), [str(tmp_path / given)])


def test_a_rerun_into_an_output_inside_the_input_is_refused_before_ray(tmp_path):
    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed
    from embednv.errors import OutputConflict

    (tmp_path / "notes").mkdir()
    write_parquet(tmp_path / "notes" / "a.parquet", [1], ["Cough."])
    config = EmbedConfig(inputs=(str(tmp_path / "notes"),), out=str(tmp_path / "notes" / "emb"), model="minilm")
    with pytest.raises(OutputConflict, match="lies inside the input"):
        run_embed(config)
    assert not (tmp_path / "notes" / "emb").exists()
