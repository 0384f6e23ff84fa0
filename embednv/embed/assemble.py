"""Collect embedded rows as they stream in and write each shard once all its rows are back.

Rows of one shard can arrive in several blocks and interleaved with other shards (actors run
concurrently). A shard is written, atomically, only when every one of its planned rows has
arrived, rows in input order, so its content never depends on timing. Error rows of the shard
are written first, to `_errors/`, so a finished data shard always implies its errors are safe.
A task that Ray retries may deliver rows again, before or after their shard is written: each
row counts once. Only the shards being assembled keep their row ids; a written shard is
remembered by its index alone, so memory stays bounded however many rows the job has.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import (
    EMBEDDING,
    ERROR,
    ERROR_FILE,
    ERROR_REASON,
    ERROR_ROW,
    HASH,
    N_CHUNKS,
    N_TOKENS,
    PADDED,
    ROW,
    SHARD,
    TEXT_HASH,
    WINDOW_TOKENS,
)
from embednv.directories import ERROR_PARTS, OutputDir, shard_name
from embednv.embed.inputs import InputPlan


class ShardAssembler:
    """`sink(shard_index, data, errors, stats)` receives each completed shard; by default it is
    written as `part-{index}.parquet` (its errors to `_errors/`). `embed --update` passes its own
    (`embed/update_writer.py`), which sends new rows to new shards and changed ones to their holders."""

    def __init__(self, plan: InputPlan, out: OutputDir, id_column: str, dim: int, sink=None):
        self.plan, self.out, self.id_column = plan, out, id_column
        self.sink = sink or self.write_shard
        self.schema = pa.schema(
            [
                pa.field(id_column, plan.id_type),
                pa.field(EMBEDDING, pa.list_(pa.float32(), dim)),
                pa.field(N_TOKENS, pa.int64()),
                pa.field(N_CHUNKS, pa.int32()),
                pa.field(TEXT_HASH, pa.string()),
            ]
        )
        self.error_schema = pa.schema(
            [
                pa.field(id_column, plan.id_type),
                pa.field(ERROR_FILE, pa.string()),
                pa.field(ERROR_ROW, pa.int64()),
                pa.field(ERROR_REASON, pa.string()),
            ]
        )
        self._parts: dict[int, list[pa.Table]] = defaultdict(list)
        self._arrived: dict[int, int] = defaultdict(int)
        self._seen: dict[int, set[int]] = {}  # row ids of the shards being assembled
        self._finished: set[int] = set()  # shards written by this run: any later row of one is a repeat
        self.written: list[dict] = []  # stats of shards written by this run

    def add(self, block: pa.Table) -> list[int]:
        """Take a block of embedded rows; returns the shards it completed (and wrote)."""
        done = []
        shard_ids = block.column(SHARD).to_numpy()
        for shard_index in map(int, np.unique(shard_ids)):
            if shard_index in self._finished:
                continue  # re-sent by a retried task after its shard was written: already on disk
            part = block.filter(pa.array(shard_ids == shard_index))
            # A task retried after a worker died may deliver rows again: keep each row once.
            seen = self._seen.setdefault(shard_index, set())
            rows = part.column(ROW).to_pylist()
            fresh = [row not in seen for row in rows]
            if not all(fresh):
                part = part.filter(pa.array(fresh))
                rows = [row for row, keep in zip(rows, fresh) if keep]
            seen.update(rows)
            self._parts[shard_index].append(part)
            self._arrived[shard_index] += len(part)
            if self._arrived[shard_index] == self.plan.shards[shard_index].n_rows:
                self._write(shard_index)
                del self._seen[shard_index]
                self._finished.add(shard_index)
                done.append(shard_index)
        return done

    def incomplete(self) -> dict[int, tuple[int, int]]:
        """Shards still waiting for rows: {shard: (arrived, expected)}. Must be empty at the end."""
        return {s: (n, self.plan.shards[s].n_rows) for s, n in self._arrived.items() if s in self._parts}

    def _write(self, shard_index: int) -> None:
        table = pa.concat_tables(self._parts.pop(shard_index)).sort_by(ROW)
        ok = table.column(ERROR).is_null()
        embedded = table.filter(ok)
        failed = table.filter(pc.invert(ok))
        uri = self.plan.files[self.plan.shards[shard_index].file].uri
        errors = pa.table(
            [
                failed.column(self.id_column).cast(self.plan.id_type),
                pa.array([uri] * len(failed), pa.string()),
                failed.column(ROW),
                failed.column(ERROR),
            ],
            schema=self.error_schema,
        )
        stats = {
            "rows": len(table),
            "embedded": len(embedded),
            "errored": len(failed),
            "tokens": int(pc.sum(embedded.column(N_TOKENS)).as_py() or 0),
            "window_tokens": int(pc.sum(table.column(WINDOW_TOKENS)).as_py() or 0),
            "padded_tokens": int(pc.sum(table.column(PADDED)).as_py() or 0),
        }
        columns = {f.name: f.name for f in self.schema} | {TEXT_HASH: HASH}
        data = pa.table([embedded.column(columns[f.name]).cast(f.type) for f in self.schema], schema=self.schema)
        self.sink(shard_index, data, errors, stats)
        self.written.append(stats)

    def write_shard(self, shard_index: int, data: pa.Table, errors: pa.Table, stats: dict) -> None:
        """A run's shard: its errors first (a finished data shard implies they are safe), then the data."""
        if len(errors):
            self.out.write_table(f"{ERROR_PARTS}/{shard_name(shard_index)}", errors)
        self.out.write_table(shard_name(shard_index), data, metadata=stats)
