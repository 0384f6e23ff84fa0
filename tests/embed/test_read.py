"""Reading (embed/read.py, embed/fields.py): every row checked, ids and text as exports have them."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from note_files import rows_of, write_parquet

from embednv.columns import ERROR, ROW, SHARD, TEXT
from embednv.embed.plan import plan_inputs


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


def test_an_invalid_jsonl_line_with_invalid_utf8_is_one_error_row(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"note_id": "a", "text": "ok"}\n{"note_id": "b", "text": "tr\xffunc\n')
    rows = rows_of(plan_inputs([str(path)], "note_id", "text", 10))
    assert [(r["note_id"], r[ERROR]) for r in rows] == [("a", None), (None, "invalid UTF-8 in line 2 at byte 28")]


def test_a_file_of_one_row_group_is_read_once_for_all_its_shards(tmp_path, monkeypatch):
    """pandas and Spark often write one big row group: cut into 5 shards, it must not be read 5 times."""
    path = tmp_path / "one-group.parquet"
    pq.write_table(pa.table({"note_id": list(range(50)), "text": [f"note {i}" for i in range(50)]}), path)
    split = tmp_path / "groups-of-7.parquet"  # shards that straddle row groups: each group still read once
    pq.write_table(pq.read_table(path), split, row_group_size=7)
    reads = []
    one, many = pq.ParquetFile.read_row_group, pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, i, **kw: reads.append(i) or one(self, i, **kw))
    monkeypatch.setattr(
        pq.ParquetFile, "read_row_groups", lambda self, gs, **kw: reads.extend(gs) or many(self, gs, **kw)
    )
    for file, groups in ((path, 1), (split, 8)):
        reads.clear()
        rows = rows_of(plan_inputs([str(file)], "note_id", "text", rows_per_shard=10))
        assert [r["note_id"] for r in rows] == list(range(50)) and [r[SHARD] for r in rows] == [
            i // 10 for i in range(50)
        ]
        assert sorted(reads) == list(range(groups)), reads
