"""Read notes from Parquet, CSV and JSONL into one normalised table shape, row by row checked.

Every reader yields pyarrow tables with the user's id column (its own name and type) and the
internal columns below. A row that cannot be embedded keeps its place with a reason in
`ERROR`, so that it ends up in `_errors.parquet` instead of vanishing or crashing the job.
"""

from __future__ import annotations

import json
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import ERROR, ROW, SHARD, TEXT
from embednv.embed.inputs import InputFile, Shard
from embednv.errors import InputError
from embednv.io import filesystem_and_path

_BLOCK = 16 << 20  # bytes per read for CSV and JSONL: streams, never the whole file


def read_ids(file: InputFile, id_column: str, text_column: str) -> pa.Array:
    """The id column of a file (after checking both columns exist); raises InputError naming the file."""
    try:
        if file.format == "parquet":
            parquet = _parquet(file)
            _require_columns(file, parquet.schema_arrow.names, id_column, text_column)
            return parquet.read(columns=[id_column]).column(0).combine_chunks()
        if file.format == "csv":
            return pa.concat_arrays([b.column(0) for b in _csv_batches(file, id_column, text_column)] or [pa.array([])])
        return _jsonl_ids(file, id_column, text_column)
    except InputError:
        raise
    except (OSError, pa.ArrowException, ValueError) as error:
        # Only the message's head: CSV parse errors quote the offending row, which is PHI.
        raise InputError(f"{file.uri}: cannot read as {file.format} ({_first_line(error).split(':')[0]})") from None


def read_shards(
    file: InputFile, shards: list[Shard], id_column: str, text_column: str, duplicates: frozenset[int]
) -> Iterator[pa.Table]:
    """Yield one checked table per pending shard of `file`, rows in file order."""
    wanted = sorted(shards, key=lambda s: s.start)
    if file.format == "parquet":
        parquet = _parquet(file)
        starts = [0]
        for group in range(parquet.num_row_groups):
            starts.append(starts[-1] + parquet.metadata.row_group(group).num_rows)
        for shard in wanted:
            groups = [
                g for g in range(parquet.num_row_groups) if starts[g] < shard.stop and starts[g + 1] > shard.start
            ]
            table = parquet.read_row_groups(groups, columns=[id_column, text_column])
            table = table.slice(shard.start - starts[groups[0]], shard.n_rows)
            yield _checked(
                table.column(0).combine_chunks(), table.column(1).combine_chunks(), None, shard, duplicates, id_column
            )
        return
    rows = (
        _csv_rows(file, id_column, text_column) if file.format == "csv" else _jsonl_rows(file, id_column, text_column)
    )
    yield from _cut_into_shards(rows, wanted, duplicates, id_column)


def _checked(ids: pa.Array, texts, reader_errors, shard: Shard, duplicates, id_column: str) -> pa.Table:
    """Attach a reason to every row that cannot be embedded; the first matching reason wins."""
    rows = pa.array(range(shard.start, shard.stop), pa.int64())
    texts, type_error = _as_text(texts)
    reasons = [None] * len(ids)
    id_null = ids.is_null().to_pylist()
    text_null = texts.is_null().to_pylist()
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0).to_pylist()
    for i in range(len(ids)):
        if id_null[i]:
            reasons[i] = "id is null"
        elif shard.start + i in duplicates:
            reasons[i] = "duplicate id (its first occurrence is kept)"
        elif reader_errors is not None and reader_errors[i]:
            reasons[i] = reader_errors[i]
        elif type_error:
            reasons[i] = type_error
        elif text_null[i]:
            reasons[i] = "text is null"
        elif blank[i]:
            reasons[i] = "text is empty or whitespace only"
    texts = pc.if_else(pa.array([r is None for r in reasons]), texts, pa.scalar(None, pa.large_string()))
    return pa.table(
        {
            id_column: ids,
            TEXT: texts,
            ERROR: pa.array(reasons, pa.string()),
            SHARD: pa.array([shard.index] * len(ids), pa.int32()),
            ROW: rows,
        }
    )


def _as_text(texts) -> tuple[pa.Array, str | None]:
    """Text as large_string; binary is decoded (invalid UTF-8 becomes a row error upstream)."""
    if isinstance(texts, pa.Array) and (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        return texts.cast(pa.large_string()), None
    if isinstance(texts, pa.Array) and not pa.types.is_null(texts.type):
        return pa.nulls(len(texts), pa.large_string()), f"text is not a string ({texts.type})"
    return pa.array(texts, pa.large_string()), None


def _cut_into_shards(rows: Iterator[tuple], shards: list[Shard], duplicates, id_column: str) -> Iterator[pa.Table]:
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
            yield _checked(pa.array(ids), texts, errors, shard, duplicates, id_column)
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
        # Text as bytes: one note with invalid UTF-8 must become an error row, not fail the file.
        convert_options=csv.ConvertOptions(
            include_columns=[id_column, text_column], column_types={text_column: pa.binary()}
        ),
    )
    yield from reader


def _csv_rows(file: InputFile, id_column: str, text_column: str) -> Iterator[tuple]:
    for batch in _csv_batches(file, id_column, text_column):
        for row_id, raw in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            yield (row_id, *_decode(raw))


def _decode(raw: bytes | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, f"invalid UTF-8 in text at byte {error.start}"


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
        record = json.loads(line.decode("utf-8", errors="replace"))
        return record, f"invalid UTF-8 in line {number} at byte {error.start}"
    except json.JSONDecodeError as error:
        return None, f"line {number} is not valid JSON ({error.msg})"


def _jsonl_rows(file: InputFile, id_column: str, text_column: str) -> Iterator[tuple]:
    for record, problem in _jsonl_records(file):
        if not isinstance(record, dict):
            yield None, None, problem or "line is not a JSON object"
            continue
        text = record.get(text_column)
        if problem is None and text is not None and not isinstance(text, str):
            problem = f"text is not a string ({type(text).__name__})"
        yield record.get(id_column), (text if problem is None else None), problem


def _jsonl_ids(file: InputFile, id_column: str, text_column: str) -> pa.Array:
    ids, seen_id, seen_text = [], False, False
    for record, _ in _jsonl_records(file):
        is_object = isinstance(record, dict)
        seen_id |= is_object and id_column in record
        seen_text |= is_object and text_column in record
        ids.append(record.get(id_column) if is_object else None)
    if ids and not seen_id:
        raise InputError(f"{file.uri}: no record has the id column {id_column!r}")
    if ids and not seen_text:
        raise InputError(f"{file.uri}: no record has the text column {text_column!r}")
    try:
        return pa.array(ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kinds = sorted({type(i).__name__ for i in ids if i is not None})
        raise InputError(f"{file.uri}: the id column {id_column!r} mixes types ({', '.join(kinds)})") from None


def _parquet(file: InputFile):
    import pyarrow.parquet as pq

    filesystem, path = filesystem_and_path(file.uri)
    try:
        return pq.ParquetFile(filesystem.open_input_file(path))
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{file.uri}: not a readable Parquet file ({_first_line(error)})") from None


def _require_columns(file: InputFile, names: list[str], *columns: str) -> None:
    for column in columns:
        if column not in names:
            raise InputError(f"{file.uri}: no column {column!r} (columns: {', '.join(names[:12])})")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
