"""Where files live and how they are written, for embed and map alike.

Paths may be local or any URI pyarrow opens (`s3://`, `gs://`, `file://`). Every file embednv
writes goes to a temporary name beside its final one and is renamed into place, so a reader (or
a rerun after a crash) never sees half a file. On object stores, where rename is copy then
delete, the final object still appears whole because a single PUT is atomic. Tables meant for
people (`cohort`'s id lists) are written as Parquet or as CSV safe to open in a spreadsheet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from embednv.text_safety import spreadsheet_cell

# File extension -> format, for notes (embed's inputs, map's --texts and --labels).
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def format_of(path: str) -> str | None:
    """ "parquet", "csv" or "jsonl" from the extension; None when embednv does not read it."""
    return FORMATS.get(os.path.splitext(path)[1].lower())


def is_uri(location: str) -> bool:
    return "://" in location


def filesystem_and_path(location: str):
    """A pyarrow filesystem and the path inside it for a local path or any pyarrow URI."""
    from pyarrow import fs

    if is_uri(location):
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def temporary_name(name: str) -> str:
    """The hidden name a file is written under before it is renamed to `name`."""
    return f".{name}.{uuid.uuid4().hex[:8]}.tmp"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write(filesystem, path: str, write: Callable[[str], None]) -> None:
    """Run `write(temporary)` and move the result to `path`: `path` is whole or absent, never half."""
    folder, _, base = path.rpartition("/")
    temporary = f"{folder}/{temporary_name(base)}"
    try:
        write(temporary)
        filesystem.move(temporary, path)
    finally:
        if filesystem.get_file_info(temporary).type.name != "NotFound":
            filesystem.delete_file(temporary)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A local temporary path for writers that need one (matplotlib, pyarrow); renamed over `path` on success."""
    temporary = path.with_name(temporary_name(path.name))
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def safe_cell(value):
    """A CSV cell a spreadsheet cannot run: `text_safety.spreadsheet_cell` (formulas quoted, bidi
    and control characters escaped); other cells are unchanged."""
    return spreadsheet_cell(value)


def csv_text(table) -> str:
    """A pyarrow table as CSV for people and spreadsheets: text quoted (quotes doubled), formula-like
    text neutralised by `safe_cell` (ids are untrusted), numbers bare, float32 in its shortest form."""
    import csv
    import io

    import numpy as np
    import pyarrow as pa

    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow([safe_cell(name) for name in table.column_names])
    columns = []
    for column in table.columns:
        if pa.types.is_floating(column.type):  # the shortest text that reads back as the same float32
            columns.append([None if v is None else float(str(np.float32(v))) for v in column.to_pylist()])
        else:
            columns.append([safe_cell(v) for v in column.to_pylist()])
    writer.writerows(zip(*columns))
    return buffer.getvalue()


def write_table_file(table, out: str) -> None:
    """Write a pyarrow table to `out` (a local path or URI) atomically: Parquet for .parquet, CSV for .csv.

    Parquet keeps every value and type as it is; CSV goes through `csv_text`.
    """
    import pyarrow.parquet as pq

    from embednv.errors import ConfigError

    if not out.lower().endswith((".csv", ".parquet")):
        raise ConfigError(f"--out {out}: give a .csv or .parquet file")
    filesystem, path = filesystem_and_path(out)
    folder = path.rpartition("/")[0]
    if folder:
        filesystem.create_dir(folder, recursive=True)
    if out.lower().endswith(".parquet"):
        atomic_write(filesystem, path, lambda tmp: pq.write_table(table, tmp, filesystem=filesystem))
        return
    data = csv_text(table).encode()

    def write(tmp: str) -> None:
        with filesystem.open_output_stream(tmp) as stream:
            stream.write(data)

    atomic_write(filesystem, path, write)
