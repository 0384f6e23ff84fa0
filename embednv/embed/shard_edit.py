"""Replace or remove rows of one finished shard, as one atomic file replacement.

Plain readers of an embeddings directory (pyarrow.dataset, DuckDB's `read_parquet('EMB/*.parquet')`,
Polars, pandas) read whatever `part-*.parquet` files exist, with no notion of a committed view.
So every edit is a single rename of a whole new shard over the old one: at every moment each note
has exactly one row, old or new, never both or none (a shard left with no row is deleted, which is
as atomic). `embed --update` and `embednv forget` both edit through here.
"""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import N_TOKENS
from embednv.directories import OutputDir, footer_stats


def edit_shard(
    out: OutputDir, name: str, id_column: str, replacements: pa.Table | None = None, remove: pa.Array | None = None
) -> int:
    """Rewrite shard `name`: rows whose id is in `replacements` take its row (in place), ids in
    `remove` leave. Returns the bytes written (0 when nothing matched, or when the shard was deleted)."""
    table = out.read_table(name)
    ids = table.column(id_column).combine_chunks()
    id_type = table.schema.field(id_column).type
    replacements = (replacements if replacements is not None else table.schema.empty_table()).select(table.schema.names)
    replacements = replacements.cast(table.schema.remove_metadata())
    positions = pc.index_in(ids, value_set=replacements.column(id_column).combine_chunks())
    replaced = positions.is_valid().to_numpy(zero_copy_only=False)
    removed = pc.is_in(ids, value_set=(remove if remove is not None else pa.array([], id_type)).cast(id_type))
    removed = removed.to_numpy(zero_copy_only=False)
    if not removed.any() and not replaced.any():
        return 0
    # One take over [old rows | replacements]: a replaced row keeps its place, a removed one goes.
    offsets = pc.fill_null(positions, 0).to_numpy(zero_copy_only=False).astype(np.int64) + len(table)
    source = np.where(replaced, offsets, np.arange(len(table)))[~removed]
    combined = pa.concat_tables([table.replace_schema_metadata(None), replacements]).combine_chunks()
    result = combined.take(pa.array(source, pa.int64()))
    if len(result) == 0:
        out.delete(name)
        return 0
    stats = footer_stats(table.schema.metadata)
    stats.update(
        rows=len(result),
        embedded=len(result),
        tokens=int(pc.sum(result.column(N_TOKENS)).as_py() or 0),
        edit=uuid.uuid4().hex[:12],  # the footer always changes, so a cohort index built before is seen as stale
    )
    out.write_table(name, result, metadata=stats)
    return out.fs.get_file_info(out.full(name)).size


def remove_rows(out: OutputDir, name: str, id_column: str, ids: pa.Array) -> int:
    """Drop the rows of a small table file (`_errors/errors.parquet`) whose id is in `ids`; returns rows removed."""
    table = out.read_table(name)
    hit = pc.is_in(table.column(id_column), value_set=ids.cast(table.schema.field(id_column).type))
    found = int(pc.sum(hit).as_py() or 0)
    if found:
        out.write_table(name, table.filter(pc.invert(hit)).replace_schema_metadata(None))
    return found
