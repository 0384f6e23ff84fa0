"""Where files live and how they are written, for embed and map alike.

Paths may be local or any URI pyarrow opens (`s3://`, `gs://`, `file://`). Every file embednv
writes goes to a temporary name beside its final one and is renamed into place, so a reader (or
a rerun after a crash) never sees half a file. On object stores, where rename is copy then
delete, the final object still appears whole because a single PUT is atomic.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# File extension -> format, for notes (embed's inputs, map's --texts and --labels).
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def format_of(path: str) -> str | None:
    """"parquet", "csv" or "jsonl" from the extension; None when embednv does not read it."""
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
