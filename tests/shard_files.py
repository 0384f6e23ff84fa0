"""Embedding directories as `embednv embed` writes them, from given ids and vectors: for the tests of
the shard reader, the map and the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_shards(
    emb_dir: Path,
    ids,
    vectors: np.ndarray,
    n_shards: int = 3,
    id_column: str = "note_id",
    manifest: bool = True,
    row_group_size: int | None = None,
) -> Path:
    """Write `vectors` (n, dim) as part-*.parquet shards with the pipeline's columns."""
    emb_dir.mkdir(parents=True, exist_ok=True)
    ids = ids if isinstance(ids, pa.Array) else pa.array(ids)
    n, dim = vectors.shape
    for s, rows in enumerate(np.array_split(np.arange(n), n_shards)):
        flat = pa.array(vectors[rows].astype(np.float32).ravel(), pa.float32())
        table = pa.table(
            {
                id_column: ids.take(pa.array(rows)),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
                "n_tokens": pa.array(np.full(len(rows), 100, np.int32)),
                "n_chunks": pa.array(np.ones(len(rows), np.int32)),
            }
        )
        pq.write_table(table, emb_dir / f"part-{s:05d}.parquet", row_group_size=row_group_size)
    if manifest:
        (emb_dir / "_manifest.json").write_text(json.dumps({"id_column": id_column, "dim": dim}))
    return emb_dir
