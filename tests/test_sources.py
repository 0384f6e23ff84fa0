"""Input discovery, checks and shard planning: real files of every format, no Ray."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.columns import ERROR, ROW, SHARD, TEXT
from embednv.embed.plan import expand_inputs, plan_inputs
from embednv.embed.read import read_shards
from embednv.errors import InputError


def write_parquet(path, ids, texts, id_type=pa.int64()):
    pq.write_table(pa.table({"note_id": pa.array(ids, id_type), "text": pa.array(texts, pa.string())}), path)
    return str(path)


def rows_of(plan, id_column="note_id", text_column="text"):
    out = []
    for file_index, file in enumerate(plan.files):
        shards = [s for s in plan.shards if s.file == file_index]
        for table in read_shards(file, shards, id_column, text_column, plan.duplicates.get(file_index, frozenset())):
            out.extend(table.to_pylist())
    return out


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


def test_row_errors_name_each_reason_and_keep_every_row(tmp_path):
    path = write_parquet(
        tmp_path / "a.parquet", [1, None, 2, 3, 4, 2], ["fine", "no id", None, "", "  \n\t", "dup of 2"]
    )
    plan = plan_inputs([path], "note_id", "text", rows_per_shard=4)
    rows = rows_of(plan)
    assert [r["note_id"] for r in rows] == [1, None, 2, 3, 4, 2]
    assert [r[ERROR] for r in rows] == [
        None,
        "id is null",
        "text is null",
        "text is empty or whitespace only",
        "text is empty or whitespace only",
        "duplicate id (its first occurrence is kept)",
    ]
    assert [r[ROW] for r in rows] == list(range(6))
    assert [r[SHARD] for r in rows] == [0, 0, 0, 0, 1, 1]
    assert rows[0][TEXT] == "fine" and all(r[TEXT] is None for r in rows[1:])


def test_duplicates_keep_the_first_occurrence_across_files(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", [5, 6], ["a", "b"])
    b = write_parquet(tmp_path / "b.parquet", [6, 7], ["c", "d"])
    rows = rows_of(plan_inputs([a, b], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR] is None) for r in rows] == [(5, True), (6, True), (6, False), (7, True)]


def test_csv_with_multiline_notes_and_invalid_utf8(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b'note_id,text\n1,"line one\nline two"\n2,"bad \xff byte"\n3,plain\n')
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert [r["note_id"] for r in rows] == [1, 2, 3]
    assert rows[0][TEXT] == "line one\nline two"
    assert rows[1][ERROR].startswith("invalid UTF-8 in text")
    assert rows[2][TEXT] == "plain"


def test_jsonl_row_problems_are_row_errors(tmp_path):
    path = tmp_path / "notes.jsonl"
    lines = [
        json.dumps({"note_id": "a", "text": "ok"}).encode(),
        b'{"note_id": "b", "text": 42}',
        b"{not json",
        json.dumps({"note_id": "c", "text": "bad"}).encode().replace(b"bad", b"b\xffd"),
        b"",
        json.dumps({"note_id": "d", "text": "fine"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    plan = plan_inputs([str(path)], "note_id", "text", 2)
    assert plan.id_type == pa.string()
    rows = rows_of(plan)
    assert [r["note_id"] for r in rows] == ["a", "b", None, "c", "d"]
    assert rows[0][ERROR] is None
    assert rows[1][ERROR] == "text is not a string (int)"
    assert rows[2][ERROR] == "id is null"  # an unparseable line has no id; its row number locates it
    assert rows[3][ERROR].startswith("invalid UTF-8 in line 4")
    assert rows[4][TEXT] == "fine"


def test_non_string_text_column_is_a_row_error(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"note_id": [1, 2], "text": [3, 4]}), path)
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert {r[ERROR] for r in rows} == {"text is not a string (int64)"}


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
