"""Read notes from Parquet, CSV and JSONL into one normalised table shape, row by row checked.

Every reader yields pyarrow tables with the user's id column (its own name; CSV and JSONL ids as
written, see `fields`) and the internal columns below. A row that cannot be embedded keeps its
place with a reason in `ERROR`, so that it ends up in `_errors/errors.parquet` instead of vanishing or
crashing the job; a column that cannot be used at all is refused while planning, naming it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import ERROR, HASH, ROW, SHARD, TEXT
from embednv.embed.fields import (
    IdType,
    arrow_id_type,
    decode_texts,
    decode_utf8,
    id_from_json,
    id_from_text,
    is_text_type,
    plain_ids,
    text_problem,
    unusable_id_type,
)
from embednv.embed.inputs import InputFile, Shard
from embednv.errors import InputError, one_line
from embednv.io import filesystem_and_path

_BLOCK = 16 << 20  # bytes per read for CSV and JSONL: streams, never the whole file


def read_ids(file: InputFile, id_column: str, text_column: str, id_type: IdType = "string") -> pa.Array:
    """The id column of a file as the run types it, after checking both columns; InputError names the file.

    A text column that cannot hold text (numbers, structs) is refused here, before any model loads.
    """
    try:
        if file.format == "parquet":
            parquet = _parquet(file)
            schema = parquet.schema_arrow
            _require_columns(file, schema.names, id_column, text_column)
            _require_types(file, schema, id_column, text_column)
            return plain_ids(parquet.read(columns=[id_column]).column(0).combine_chunks())
        if file.format == "csv":
            ids = [row_id for row_id, _, _ in _csv_rows(file, id_column, text_column, id_type, texts=False)]
            return pa.array(ids, arrow_id_type(id_type))
        return _jsonl_ids(file, id_column, text_column, id_type)
    except InputError:
        raise
    except (OSError, pa.ArrowException, ValueError) as error:
        # Only the message's head: CSV parse errors quote the offending row, which is PHI.
        raise InputError(f"{file.uri}: cannot read as {file.format} ({one_line(error).split(':')[0]})") from None


def read_shards(
    file: InputFile,
    shards: list[Shard],
    id_column: str,
    text_column: str,
    duplicates: frozenset[int],
    id_type: IdType = "string",
) -> Iterator[pa.Table]:
    """Yield one checked table per pending shard of `file`, rows in file order (only `Shard.rows` when set)."""
    wanted = sorted(shards, key=lambda s: s.start)
    for shard, table in zip(wanted, _read_shards(file, wanted, id_column, text_column, duplicates, id_type)):
        yield table if shard.rows is None else table.filter(pc.is_in(table.column(ROW), pa.array(sorted(shard.rows))))


def _read_shards(file, wanted, id_column, text_column, duplicates, id_type) -> Iterator[pa.Table]:
    if file.format == "parquet":
        parquet = _parquet(file)
        starts = [0]
        for group in range(parquet.num_row_groups):
            starts.append(starts[-1] + parquet.metadata.row_group(group).num_rows)
        held: dict[int, pa.Table] = {}  # row groups read once, kept while a later shard still needs them
        for shard in wanted:  # in file order
            groups = [
                g for g in range(parquet.num_row_groups) if starts[g] < shard.stop and starts[g + 1] > shard.start
            ]
            held = {g: t for g, t in held.items() if starts[g + 1] > shard.start}
            for g in groups:
                if g not in held:  # a file of one big row group (pandas, Spark) is read once, not once a shard
                    held[g] = parquet.read_row_group(g, columns=[id_column, text_column])
            table = pa.concat_tables([held[g] for g in groups])
            table = table.slice(shard.start - starts[groups[0]], shard.stop - shard.start)
            texts, problems = decode_texts(table.column(1).combine_chunks())
            yield _checked(plain_ids(table.column(0).combine_chunks()), texts, problems, shard, duplicates, id_column)
        return
    rows = (
        _csv_rows(file, id_column, text_column, id_type)
        if file.format == "csv"
        else _jsonl_rows(file, id_column, text_column, id_type)
    )
    yield from _cut_into_shards(rows, wanted, duplicates, id_column, arrow_id_type(id_type))


def _checked(ids: pa.Array, texts, reader_errors, shard: Shard, duplicates, id_column: str) -> pa.Table:
    """Attach a reason to every row that cannot be embedded; the first matching reason wins.

    The reader's reason comes first: a line that is not JSON has no id either, and "id is null"
    would hide what is really wrong with it.
    """
    rows = pa.array(range(shard.start, shard.stop), pa.int64())
    texts = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.large_string())
    reasons = [None] * len(ids)
    id_null = ids.is_null().to_pylist()
    for i, text in enumerate(texts.to_pylist()):
        if reader_errors is not None and reader_errors[i]:
            reasons[i] = reader_errors[i]
        elif id_null[i]:
            reasons[i] = "id is null"
        elif shard.start + i in duplicates:
            reasons[i] = "duplicate id (its first occurrence is kept)"
        else:
            reasons[i] = text_problem(text)
    texts = pc.if_else(pa.array([r is None for r in reasons]), texts, pa.scalar(None, pa.large_string()))
    return pa.table(
        {
            id_column: ids,
            TEXT: texts,
            HASH: pa.array(
                [None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in texts.to_pylist()], pa.string()
            ),
            ERROR: pa.array(reasons, pa.string()),
            SHARD: pa.array([shard.index] * len(ids), pa.int32()),
            ROW: rows,
        }
    )


def _cut_into_shards(
    rows: Iterator[tuple], shards: list[Shard], duplicates, id_column: str, id_type: pa.DataType
) -> Iterator[pa.Table]:
    """Group a row stream (id, text, error) into the pending shards; rows of finished shards are skipped."""
    pending = iter(shards)
    shard = next(pending, None)
    ids, texts, errors = [], [], []
    for position, (row_id, text, error) in enumerate(rows):
        if shard is None:
            return
        if position < shard.start:
            continue
        ids.append(row_id), texts.append(text), errors.append(error)
        if position == shard.stop - 1:
            yield _checked(pa.array(ids, id_type), texts, errors, shard, duplicates, id_column)
            ids, texts, errors = [], [], []
            shard = next(pending, None)


def _csv_batches(file: InputFile, id_column: str, text_column: str) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    filesystem, path = filesystem_and_path(file.uri)
    stream = filesystem.open_input_stream(path)
    header = csv.open_csv(
        stream, read_options=csv.ReadOptions(block_size=1 << 16), convert_options=csv.ConvertOptions(include_columns=[])
    ).schema.names
    stream.close()
    _require_columns(file, header, id_column, text_column)
    reader = csv.open_csv(
        filesystem.open_input_stream(path),
        read_options=csv.ReadOptions(block_size=_BLOCK),
        parse_options=csv.ParseOptions(newlines_in_values=True),  # clinical notes span lines
        # Both columns as bytes, typed row by row (`fields`): no type is inferred (leading zeros are
        # part of an MRN), and one cell of invalid UTF-8 becomes an error row, not a failed file.
        convert_options=csv.ConvertOptions(
            include_columns=[id_column, text_column],
            column_types={id_column: pa.binary(), text_column: pa.binary()},
        ),
    )
    yield from reader


def _csv_rows(file: InputFile, id_column: str, text_column: str, id_type: IdType, texts: bool = True):
    """(id, text, problem) per CSV row; with texts=False only the ids are decoded (planning)."""
    for batch in _csv_batches(file, id_column, text_column):
        raw_texts = batch.column(1).to_pylist() if texts else [None] * len(batch)
        for raw_id, raw_text in zip(batch.column(0).to_pylist(), raw_texts):
            cell, id_problem = decode_utf8(raw_id or None, "id")  # an empty id cell is a missing id
            row_id, type_problem = (None, None) if id_problem else id_from_text(cell, id_type)
            text, text_problem = decode_utf8(raw_text)
            yield row_id, text, id_problem or type_problem or text_problem


def _jsonl_records(file: InputFile) -> Iterator[tuple[object, str | None]]:
    """(record, problem) per non-blank line; a bad line is a row error, not a file error."""
    filesystem, path = filesystem_and_path(file.uri)
    with filesystem.open_input_stream(path) as stream:
        number, rest = 0, b""
        while True:
            block = stream.read(_BLOCK)
            lines = (rest + block).split(b"\n")
            rest = lines.pop() if block else b""
            for line in lines:
                number += 1
                if line.strip():
                    yield _parse_line(line, number)
            if not block:
                return


def _parse_line(line: bytes, number: int) -> tuple[object, str | None]:
    try:
        return json.loads(line), None
    except UnicodeDecodeError as error:
        try:  # keep the id, if the rest of the line parses, so that the error row can name it
            record = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            record = None
        return record, f"invalid UTF-8 in line {number} at byte {error.start}"
    except json.JSONDecodeError as error:
        return None, f"line {number} is not valid JSON ({error.msg})"


def _jsonl_rows(file: InputFile, id_column: str, text_column: str, id_type: IdType) -> Iterator[tuple]:
    for record, problem in _jsonl_records(file):
        if not isinstance(record, dict):
            yield None, None, problem or "line is not a JSON object"
            continue
        row_id, id_problem = id_from_json(record.get(id_column), id_type)
        text = record.get(text_column)
        problem = problem or id_problem
        if problem is None and text is not None and not isinstance(text, str):
            problem = f"text is not a string ({type(text).__name__})"
        yield row_id, (text if problem is None else None), problem


def _jsonl_ids(file: InputFile, id_column: str, text_column: str, id_type: IdType) -> pa.Array:
    ids, seen_id, seen_text, text_kinds = [], False, False, set()
    for record, _ in _jsonl_records(file):
        is_object = isinstance(record, dict)
        seen_id |= is_object and id_column in record
        seen_text |= is_object and text_column in record
        ids.append(id_from_json(record.get(id_column), id_type)[0] if is_object else None)
        if is_object and record.get(text_column) is not None:
            text_kinds.add(type(record[text_column]).__name__)
    if ids and not seen_id:
        raise InputError(f"{file.uri}: no record has the id column {id_column!r}")
    if ids and not seen_text:
        raise InputError(f"{file.uri}: no record has the text column {text_column!r}")
    if text_kinds and "str" not in text_kinds:  # a column of numbers or objects: refused before any model loads
        kinds = ", ".join(sorted(text_kinds))
        raise InputError(f"{file.uri}: the text column {text_column!r} holds {kinds} values, not text")
    return pa.array(ids, arrow_id_type(id_type))


def _parquet(file: InputFile):
    import pyarrow.parquet as pq

    filesystem, path = filesystem_and_path(file.uri)
    try:
        return pq.ParquetFile(filesystem.open_input_file(path))
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{file.uri}: not a readable Parquet file ({one_line(error)})") from None


def _require_columns(file: InputFile, names: list[str], *columns: str) -> None:
    for column in columns:
        if column not in names:
            raise InputError(f"{file.uri}: no column {column!r} (columns: {', '.join(names[:12])})")


def _require_types(file: InputFile, schema: pa.Schema, id_column: str, text_column: str) -> None:
    text_type, id_type = schema.field(text_column).type, schema.field(id_column).type
    if not is_text_type(text_type):
        raise InputError(f"{file.uri}: the text column {text_column!r} is {text_type}, not text (string or binary)")
    if unusable_id_type(id_type):
        raise InputError(f"{file.uri}: the id column {id_column!r} is {id_type}; ids must be strings or numbers")
