"""Per-note columns that are not embeddings (text for cluster terms, known labels for metrics).

They come from the notes input (Parquet, CSV or JSONL) and are joined to the map on the
embedding id column. Only the id and the requested columns are read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa

from embednv.errors import MapError
from embednv.io import FORMATS, filesystem_and_path, format_of

log = logging.getLogger(__name__)

DATASET_FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}  # embednv's names -> pyarrow.dataset's


def read_columns(path: str | Path, id_column: str, columns: list[str]) -> pa.Table:
    """Read `id_column` and `columns` from a Parquet/CSV/JSONL file or a directory of Parquet."""
    dataset, wanted = _open(path, id_column, columns)
    return dataset.to_table(columns=wanted)


def check_columns(path: str | Path, id_column: str, columns: list[str]) -> None:
    """Fail now, before hours of compute, if the file or a column is missing (reads the schema only)."""
    _open(path, id_column, columns)


def _open(path: str | Path, id_column: str, columns: list[str]):
    import pyarrow.dataset as ds
    from pyarrow import fs

    filesystem, inner = filesystem_and_path(str(path))
    kind = filesystem.get_file_info(inner).type
    if kind == fs.FileType.NotFound:
        raise MapError(f"Input not found: {path}")
    fmt = "parquet" if kind == fs.FileType.Directory else format_of(inner)
    if fmt is None:
        suffix = os.path.splitext(inner)[1]
        raise MapError(f"Unknown input format {suffix!r} for {path}. Valid: {', '.join(sorted(FORMATS))}")
    dataset = ds.dataset(inner, format=DATASET_FORMATS[fmt], filesystem=filesystem)
    wanted = [id_column, *dict.fromkeys(c for c in columns if c != id_column)]
    missing = [c for c in wanted if c not in dataset.schema.names]
    if missing:
        raise MapError(f"{path} has no column(s) {missing}; it has {dataset.schema.names}")
    return dataset, wanted


def align(ids: pa.Array, table: pa.Table, id_column: str, column: str, source: str | Path = "?") -> pa.Array:
    """`table[column]` reordered to match `ids`; null where an id is absent (first row wins on duplicates)."""
    import pyarrow.compute as pc

    keys = table.column(id_column).combine_chunks()
    if keys.type != ids.type:
        try:
            keys = keys.cast(ids.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise MapError(
                f"{source}: ids in {id_column!r} are {keys.type}, the embeddings' are {ids.type}: {e}"
            ) from None
    positions = pc.index_in(ids, value_set=keys)
    found = len(ids) - positions.null_count
    if found < len(ids):
        log.warning("%s: %d of %d map ids have no %r", source, len(ids) - found, len(ids), column)
    return table.column(column).combine_chunks().take(positions)
