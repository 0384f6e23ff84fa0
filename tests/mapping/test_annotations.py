import json

import pyarrow as pa
import pytest

from embednv.errors import MapError
from embednv.mapping.annotations import align, check_columns, read_columns

ROWS = [
    {"note_id": 3, "text": "three", "dept": "a"},
    {"note_id": 1, "text": "one", "dept": "b"},
    {"note_id": 3, "text": "dup", "dept": "c"},
]


@pytest.fixture(params=["csv", "jsonl", "parquet"])
def notes(request, tmp_path):
    path = tmp_path / f"notes.{request.param}"
    if request.param == "csv":
        path.write_text("note_id,text,dept\n" + "".join(f"{r['note_id']},{r['text']},{r['dept']}\n" for r in ROWS))
    elif request.param == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def test_reads_only_the_wanted_columns_and_aligns_to_the_map_ids(notes):
    table = read_columns(notes, "note_id", ["text"])
    assert table.column_names == ["note_id", "text"]
    ids = pa.array([1, 2, 3], pa.int32())  # the map's id type differs from the file's int64
    assert align(ids, table, "note_id", "text").to_pylist() == ["one", None, "three"]  # first row wins


def test_missing_file_column_or_format_is_a_clear_error(notes, tmp_path):
    with pytest.raises(MapError, match=r"no column\(s\) \['body'\]"):
        check_columns(notes, "note_id", ["body"])
    with pytest.raises(MapError, match="not found"):
        check_columns(tmp_path / "nope.csv", "note_id", ["text"])
    (tmp_path / "notes.xlsx").write_text("")
    with pytest.raises(MapError, match="Unknown input format '.xlsx'"):
        check_columns(tmp_path / "notes.xlsx", "note_id", ["text"])


def test_incompatible_id_types_are_reported(notes):
    table = read_columns(notes, "note_id", ["text"])
    with pytest.raises(MapError, match="ids in 'note_id'"):
        align(
            pa.array([b"\x00"], pa.binary()),
            table.set_column(0, "note_id", pa.array([[1], [2], [3]])),
            "note_id",
            "text",
        )
