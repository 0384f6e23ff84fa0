"""Embedding directories as `embednv embed` writes them, from given ids and vectors, and the exact
answer a neighbour search over them must give: for the tests of the shard reader, the map, the
index and cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embednv.columns import EMBEDDING, N_CHUNKS, N_TOKENS
from embednv.directories import MANIFEST, OutputDir, shard_name


def write_shards(
    emb_dir: Path,
    ids,
    vectors: np.ndarray,
    n_shards: int = 3,
    id_column: str = "note_id",
    manifest: bool | dict = True,
    row_group_size: int | None = None,
) -> Path:
    """Write `vectors` (n, dim) as shards with ShardAssembler's schema, through OutputDir's writer.

    `manifest`: True writes the id column and dim, a dict writes that manifest, False none.
    `row_group_size` splits every shard into row groups (offsets restart per group), written
    with pyarrow directly since the pipeline's writer keeps a shard in one group.
    """
    ids = ids if isinstance(ids, pa.Array) else pa.array(ids)
    n, dim = vectors.shape
    schema = pa.schema(
        [
            pa.field(id_column, ids.type),
            pa.field(EMBEDDING, pa.list_(pa.float32(), dim)),
            pa.field(N_TOKENS, pa.int64()),
            pa.field(N_CHUNKS, pa.int32()),
        ]
    )
    emb_dir.mkdir(parents=True, exist_ok=True)
    out = OutputDir(str(emb_dir))
    for s, rows in enumerate(np.array_split(np.arange(n), n_shards)):
        flat = pa.array(vectors[rows].astype(np.float32).ravel(), pa.float32())
        table = pa.table(
            [
                ids.take(pa.array(rows)),
                pa.FixedSizeListArray.from_arrays(flat, dim),
                pa.array(np.full(len(rows), 100), pa.int64()),
                pa.array(np.ones(len(rows)), pa.int32()),
            ],
            schema=schema,
        )
        if row_group_size:
            pq.write_table(table, emb_dir / shard_name(s), row_group_size=row_group_size)
        else:
            out.write_table(shard_name(s), table)
    if manifest:
        out.write_json(MANIFEST, manifest if isinstance(manifest, dict) else {"id_column": id_column, "dim": dim})
    return emb_dir


def brute_force(ids, x: np.ndarray, query: np.ndarray, k: int, exclude=None) -> tuple[list, np.ndarray]:
    """Every cosine at once, sorted: what a streaming top-k or an index must equal."""
    scores = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    order = [i for i in np.argsort(-scores, kind="stable") if ids[i] != exclude][:k]
    return [ids[i] for i in order], scores[order]
