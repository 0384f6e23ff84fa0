"""Stream the embedding shards written by the pipeline, one record batch at a time: what the map,
the cohort index and `embednv cohort` all read.

An embedding directory (a local path or an `s3://`, `gs://` or `file://` URI) holds
`part-*.parquet` shards with an id column, `embedding`
(`fixed_size_list<float32>[dim]`), `n_tokens` and `n_chunks`. The id column is named in
`_manifest.json` (`"id_column"`); without a manifest it is the first other column. Shards are
read in name order, so every pass over them yields the rows in the same order. A directory that
cannot be read this way raises InputError, whichever command read it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from embednv.columns import EMBEDDING, OUTPUT_VALUE_COLUMNS
from embednv.directories import MANIFEST, SHARD_GLOB, OutputDir
from embednv.errors import InputError

log = logging.getLogger(__name__)

READ_BUFFER_BYTES = 8 << 20


@dataclass(frozen=True)
class ShardSet:
    """The shards of one embedding directory and what their schema says."""

    paths: tuple[str, ...]  # paths inside `filesystem`
    id_column: str
    dim: int
    n_rows: int  # from the Parquet footers, before reading any data
    filesystem: object = None  # a pyarrow FileSystem; None = local

    def open(self, path: str, **kwargs):
        """A pyarrow ParquetFile for one of `paths`."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.filesystem.open_input_file(path) if self.filesystem else path, **kwargs)


def open_shards(emb_dir: str) -> ShardSet:
    """Find the shards, the id column and the embedding width; fail early if any is missing."""
    directory = OutputDir(str(emb_dir))
    if not directory.is_dir():
        raise InputError(f"Embedding directory not found: {emb_dir}")
    paths = tuple(directory.full(name) for name in directory.shard_names())
    if not paths:
        raise InputError(f"No {SHARD_GLOB} shards in {emb_dir}")
    shards = ShardSet(paths, "", 0, 0, directory.fs)
    schema = shards.open(paths[0]).schema_arrow
    if EMBEDDING not in schema.names:
        raise InputError(f"{_name(paths[0])} has no {EMBEDDING!r} column; columns: {schema.names}")
    id_column = _id_column(emb_dir, schema.names, directory.manifest())
    emb_type = schema.field(EMBEDDING).type
    if pa.types.is_fixed_size_list(emb_type):
        dim = emb_type.list_size
    elif pa.types.is_list(emb_type) or pa.types.is_large_list(emb_type):
        # Variable-length lists are tolerated (older writers); the width is that of the first row.
        first = next(shards.open(paths[0]).iter_batches(batch_size=1, columns=[EMBEDDING]))
        dim = len(first.column(0)[0])
    else:
        raise InputError(f"{EMBEDDING!r} must be a list of floats, got {emb_type}")
    n_rows = sum(shards.open(p).metadata.num_rows for p in paths)
    log.info("%d shards, %d rows, dim %d, id column %r", len(paths), n_rows, dim, id_column)
    return ShardSet(paths=paths, id_column=id_column, dim=dim, n_rows=n_rows, filesystem=directory.fs)


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _id_column(emb_dir: str, names: list[str], manifest: dict | None) -> str:
    """The id column the manifest names; without a manifest, the first column that is not an output value."""
    if manifest is not None:
        name = manifest.get("id_column")
        if name is not None:
            if name not in names:
                raise InputError(f"{MANIFEST} names id column {name!r}, shards have {names}")
            return name
    candidates = [c for c in names if c not in OUTPUT_VALUE_COLUMNS]
    if not candidates:
        raise InputError(f"No id column in shards of {emb_dir}: columns are {names}")
    return candidates[0]


def iter_batches(
    shards: ShardSet, batch_size: int, with_ids: bool = False
) -> Iterator[tuple[pa.Array | None, np.ndarray]]:
    """Yield `(ids or None, unit vectors (b, dim) float32)` per record batch, in shard order.

    Only one batch of at most `batch_size` rows is decoded at a time, so memory does not
    grow with the number of rows.
    """
    columns = [shards.id_column, EMBEDDING] if with_ids else [EMBEDDING]
    for path in shards.paths:
        # A buffered stream decodes pages as batches need them; without it a row group's whole
        # column chunk is read first (1.1 GB for one 50k x 4096 row group, 0.33 GB with it).
        shard = shards.open(path, buffer_size=READ_BUFFER_BYTES)
        # One iter_batches call per row group: a single call over the whole file kept every
        # earlier row group's buffers allocated (pyarrow 26: +160 MB per 10k x 4096 group, so a
        # 50k-row shard peaked at 1 GB); per group it stays at one group's worth (~0.3 GB).
        for group in range(shard.num_row_groups):
            for batch in shard.iter_batches(batch_size=batch_size, columns=columns, row_groups=[group]):
                vectors = unit_vectors(batch.column(EMBEDDING), shards.dim, path)
                yield (batch.column(shards.id_column) if with_ids else None), vectors


def unit_vectors(column: pa.Array, dim: int, source: str = "?") -> np.ndarray:
    """L2-normalise a list<float> column into a `(b, dim)` float32 array."""
    if column.null_count:
        raise InputError(f"{source}: {column.null_count} rows have a null {EMBEDDING!r}")
    flat = column.flatten().to_numpy(zero_copy_only=False)  # flatten() honours slice offsets
    if flat.size != len(column) * dim:
        raise InputError(f"{source}: embeddings are not all {dim}-dimensional")
    x = flat.astype(np.float32, copy=False).reshape(len(column), dim)
    # The pipeline already writes unit vectors; normalising again costs little and makes the map
    # depend on direction only (cosine geometry) whatever wrote the shards. Zero rows stay zero,
    # rows with NaN or inf become non-finite, quietly: the map names them (checks.RowCheck).
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)
