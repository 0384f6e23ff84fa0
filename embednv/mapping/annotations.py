"""Per-note columns that are not embeddings (text for cluster terms, known labels for metrics).

They come from the notes input (Parquet, CSV or JSONL) and are joined to the map on the
embedding id column. Only the id and the requested columns are read, and `aligned_batches`
reads them one record batch at a time: the map's ids are hashed once (O(n) ids, what the
driver holds anyway), each batch is joined to them, and no column of every note is ever held,
so note text costs the driver one batch, whatever n.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv.errors import MapError
from embednv.io import FORMATS, filesystem_and_path, format_of

log = logging.getLogger(__name__)

DATASET_FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}  # embednv's names -> pyarrow.dataset's


# Rows per record batch: at 4 KB a note, 8 MiB of text; large enough that the per-batch join and
# vectorizer calls cost nothing next to tokenising.
BATCH_ROWS = 2_048
READ_BUFFER_BYTES = 8 << 20


class IdIndex:
    """The map's ids -> their row positions: a sorting permutation, then each batch's keys found by binary search.

    Sorting rather than a hash table: one int32 permutation of n (4 bytes a note) over the ids the map
    holds anyway, instead of a table several times that, and a repeated id finds its first map row
    (a stable sort keeps equal ids in map order) with no special case. numpy's `searchsorted(...,
    sorter=)` would copy the permutation to 8 bytes a note on every call, and a sorted copy of the
    ids costs 8 more: at a million notes either is what grew the driver's memory with n.
    """

    def __init__(self, ids: pa.Array) -> None:
        self.type, self.n = ids.type, len(ids)
        self._keys = ids.to_numpy(zero_copy_only=False)  # integer ids without nulls: a view, no copy
        order = np.argsort(self._keys, kind="stable")
        self._rows = order.astype(np.int32) if self.n < 2**31 else order  # (n,) map rows in id order
        del order

    def positions(self, keys: pa.Array, source: str | Path, id_column: str) -> np.ndarray:
        """Map row of each key, -1 where the key is null or not a map id; keys are cast to the map's id type."""
        import pyarrow.compute as pc

        if keys.type != self.type:
            try:
                keys = keys.cast(self.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise MapError(
                    f"{source}: ids in {id_column!r} are {keys.type}, the embeddings' are {self.type}: {e}"
                ) from None
        rows = np.full(len(keys), -1, dtype=np.int64)
        valid = np.flatnonzero(pc.is_valid(keys).to_numpy(zero_copy_only=False))
        if not len(valid) or not self.n:
            return rows
        query = keys.take(pa.array(valid)).to_numpy(zero_copy_only=False)
        at = self._rows[np.minimum(self._ids_below(query), self.n - 1)]
        found = self._keys[at] == query
        rows[valid[found]] = at[found]
        return rows

    def _ids_below(self, query: np.ndarray) -> np.ndarray:
        """For each query, how many map ids sort below it (its insertion point), by binary lifting."""
        below = np.zeros(len(query), dtype=np.int64)
        step = 1 << (self.n.bit_length() - 1)
        while step:
            ahead = below + step
            fits = np.flatnonzero(ahead <= self.n)
            smaller = fits[self._keys[self._rows[ahead[fits] - 1]] < query[fits]]
            below[smaller] = ahead[smaller]
            step >>= 1
        return below


def aligned_batches(
    path: str | Path, id_column: str, columns: list[str], ids: IdIndex, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
    """Yield `(map rows, the batch's rows for them)`, one record batch of the file at a time.

    Rows whose id is not on the map are dropped; an id that repeats in the file keeps its first
    row. Ids of the map that the file lacks are counted and logged at the end.
    """
    dataset, wanted = _open(path, id_column, columns)
    filled = np.zeros(ids.n, dtype=bool)
    for batch in _record_batches(dataset, wanted, batch_rows):
        if not batch.num_rows:
            continue
        rows = ids.positions(batch.column(id_column), path, id_column)
        keep = np.flatnonzero(rows >= 0)
        keep = keep[~filled[rows[keep]]]
        _, first = np.unique(rows[keep], return_index=True)  # a repeat inside this batch: its first row
        keep = np.sort(keep[first])
        if not len(keep):
            continue
        filled[rows[keep]] = True
        yield rows[keep], batch.take(pa.array(keep))
    missing = ids.n - int(filled.sum())
    if missing:
        log.warning("%s: %d of %d map ids have no %s", path, missing, ids.n, ", ".join(map(repr, columns)))


def _record_batches(dataset, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The dataset's rows, `batch_rows` at a time, holding as little of the file as the format allows.

    Parquet is read one row group at a time through a buffered stream without pre-buffering, as
    `reader.iter_batches` reads shards: the dataset scanner's read-ahead held ~120 MB more on a
    20,000-row-group notes file and grew with the file (measured at 100k and 1M notes). CSV and
    JSONL stream by blocks through the scanner.
    """
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if not isinstance(dataset.format, ds.ParquetFileFormat):
        yield from dataset.scanner(columns=columns, batch_size=batch_rows, batch_readahead=1).to_batches()
        return
    for fragment in dataset.get_fragments():
        stream = fragment.filesystem.open_input_file(fragment.path)
        parquet = pq.ParquetFile(stream, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group])


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
