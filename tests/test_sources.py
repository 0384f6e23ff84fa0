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
        duplicates = plan.duplicates.get(file_index, frozenset())
        id_type = "int" if plan.id_type == pa.int64() and file.format != "parquet" else "string"
        for table in read_shards(file, shards, id_column, text_column, duplicates, id_type):
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
    assert [r["note_id"] for r in rows] == ["1", "2", "3"]
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
    assert rows[2][ERROR] == "line 3 is not valid JSON (Expecting property name enclosed in double quotes)"
    assert rows[3][ERROR].startswith("invalid UTF-8 in line 4")
    assert rows[4][TEXT] == "fine"


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


def test_csv_and_jsonl_ids_are_kept_exactly_as_written(tmp_path):
    ids = ["007", "7", "0012345", "12345"]
    csv = tmp_path / "notes.csv"
    csv.write_text("note_id,text\n" + "".join(f"{i},note {n}\n" for n, i in enumerate(ids)))
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("".join(json.dumps({"note_id": i, "text": f"note {n}"}) + "\n" for n, i in enumerate(ids)))
    for path in (csv, jsonl):
        plan = plan_inputs([str(path)], "note_id", "text", 10)
        assert plan.id_type == pa.string() and plan.duplicates == {}
        rows = rows_of(plan)
        assert [(r["note_id"], r[ERROR]) for r in rows] == [(i, None) for i in ids], path.name


def test_id_type_int_reads_integers_and_names_the_rows_that_are_not(tmp_path):
    csv = tmp_path / "notes.csv"
    csv.write_text("note_id,text\n007,a\n7,b\nMRN-9,c\n 12 ,d\n99999999999999999999,e\n,f\n")
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text('{"note_id": "007", "text": "a"}\n{"note_id": 8, "text": "b"}\n{"note_id": 1.5, "text": "c"}\n')
    plan = plan_inputs([str(csv), str(jsonl)], "note_id", "text", 10, id_type="int")
    assert plan.id_type == pa.int64()
    rows = rows_of(plan)
    not_int = "id is not an integer (--id-type int)"
    assert [(r["note_id"], r[ERROR]) for r in rows] == [
        (7, None),
        (7, "duplicate id (its first occurrence is kept)"),
        (None, not_int),
        (12, None),
        (None, not_int),
        (None, "id is null"),
        (7, "duplicate id (its first occurrence is kept)"),
        (8, None),
        (None, "id is a JSON number, not a string or an integer"),
    ]


def test_numeric_jsonl_ids_are_read_as_their_text(tmp_path):
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text('{"note_id": 7, "text": "a"}\n{"note_id": "007", "text": "b"}\n{"note_id": true, "text": "c"}\n')
    rows = rows_of(plan_inputs([str(jsonl)], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR]) for r in rows] == [
        ("7", None),
        ("007", None),
        (None, "id is a JSON boolean, not a string or an integer"),
    ]


def _invalid_utf8_strings(*cells: bytes) -> pa.Array:
    """A string column holding invalid UTF-8, as writers that do not validate produce (Arrow does not check a view)."""
    return pa.array(cells, pa.binary()).view(pa.string())


def test_invalid_utf8_in_a_parquet_string_column_is_one_error_row(tmp_path):
    path = tmp_path / "export.parquet"
    pq.write_table(
        pa.table({"note_id": [1, 2, 3], "text": _invalid_utf8_strings(b"ok", b"bad \xff byte", b"fine")}), path
    )
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert [(r["note_id"], r[ROW], r[ERROR]) for r in rows] == [
        (1, 0, None),
        (2, 1, "invalid UTF-8 in text at byte 4"),
        (3, 2, None),
    ]
    assert [r[TEXT] for r in rows] == ["ok", None, "fine"]


def test_invalid_utf8_in_a_csv_id_is_one_error_row(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"note_id,text\nA1,ok\nB\xff2,note\nC3,fine\n")
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR]) for r in rows] == [
        ("A1", None),
        (None, "invalid UTF-8 in id at byte 1"),
        ("C3", None),
    ]


def test_dictionary_and_binary_text_columns_are_text(tmp_path):
    import pandas as pd

    categorical = tmp_path / "pandas.parquet"  # pandas writes a categorical as a dictionary column
    pd.DataFrame({"note_id": ["a", "b", "c"], "text": pd.Categorical(["cough", "fever", "cough"])}).to_parquet(
        categorical
    )
    unannotated = tmp_path / "hive.parquet"  # older Hive/Impala write strings as plain binary
    pq.write_table(pa.table({"note_id": [1, 2], "text": pa.array([b"rash", b"bad \xfe"], pa.binary())}), unannotated)
    rows = rows_of(plan_inputs([str(categorical)], "note_id", "text", 10))
    assert [(r["note_id"], r[TEXT], r[ERROR]) for r in rows] == [
        ("a", "cough", None),
        ("b", "fever", None),
        ("c", "cough", None),
    ]
    rows = rows_of(plan_inputs([str(unannotated)], "note_id", "text", 10))
    assert [(r[TEXT], r[ERROR]) for r in rows] == [("rash", None), (None, "invalid UTF-8 in text at byte 4")]


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


def test_an_invalid_jsonl_line_with_invalid_utf8_is_one_error_row(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"note_id": "a", "text": "ok"}\n{"note_id": "b", "text": "tr\xffunc\n')
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR]) for r in rows] == [("a", None), (None, "invalid UTF-8 in line 2 at byte 28")]


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
