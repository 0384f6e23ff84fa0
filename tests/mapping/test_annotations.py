import json

import pyarrow as pa
import pytest

from embednv.errors import MapError
from embednv.mapping.annotations import IdIndex, aligned_batches, check_columns

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


def aligned(notes, ids: pa.Array, column: str, batch_rows: int = 2048) -> list:
    """`column` of the file in map-row order through the streamed join; None where the file lacks an id."""
    values = [None] * len(ids)
    for rows, batch in aligned_batches(notes, "note_id", [column], IdIndex(ids), batch_rows):
        assert batch.schema.names == ["note_id", column]  # only the wanted columns are read
        for row, value in zip(rows, batch.column(column).to_pylist()):
            values[row] = value
    return values


@pytest.mark.parametrize("batch_rows", [1, 2048])  # the repeat in another batch, and in the same one
def test_reads_only_the_wanted_columns_and_aligns_to_the_map_ids(notes, batch_rows):
    ids = pa.array([1, 2, 3], pa.int32())  # the map's id type differs from the file's int64
    assert aligned(notes, ids, "text", batch_rows) == ["one", None, "three"]  # first row wins


def test_missing_file_column_or_format_is_a_clear_error(notes, tmp_path):
    with pytest.raises(MapError, match=r"no column\(s\) \['body'\]"):
        check_columns(notes, "note_id", ["body"])
    with pytest.raises(MapError, match="not found"):
        check_columns(tmp_path / "nope.csv", "note_id", ["text"])
    (tmp_path / "notes.xlsx").write_text("")
    with pytest.raises(MapError, match="Unknown input format '.xlsx'"):
        check_columns(tmp_path / "notes.xlsx", "note_id", ["text"])


def test_incompatible_id_types_are_reported(notes):
    with pytest.raises(MapError, match="ids in 'note_id'"):
        aligned(notes, pa.array([[1], [2]], pa.list_(pa.int64())), "text")
