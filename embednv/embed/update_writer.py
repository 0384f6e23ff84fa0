"""Where an update's embedded notes go: new notes into new shards, changed ones over their old rows.

The `ShardAssembler` hands over each completed input shard (the notes of it that were new or
changed). New notes are gathered into new `part-NNNNN.parquet` files of `rows_per_shard` rows,
numbered after the last shard there (each written atomically: a reader sees none or all of it).
Changed notes wait, grouped by the shard holding their old row, and each holder is rewritten
once (`shard_edit.edit_shard`, one atomic replacement) at the end or when the waiting vectors
pass `flush_bytes`. Every step therefore leaves exactly one row per note. A note whose new text
cannot be embedded loses its old row and is listed in `_errors.parquet` instead (its vector is
no longer its text's); errors are merged last, atomically.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import ERROR_FILE, ERROR_REASON, ERROR_ROW, N_TOKENS
from embednv.directories import ERRORS, OutputDir, shard_name
from embednv.embed.shard_edit import edit_shard
from embednv.embed.update import UpdatePlan

FLUSH_BYTES = 256 << 20  # changed vectors held before their shards are rewritten: bounded memory
DUPLICATE_REASON = "duplicate id"  # the start of `read._checked`'s reason for a repeated id


class UpdateWriter:
    def __init__(self, out: OutputDir, update: UpdatePlan, id_column: str, rows_per_shard: int):
        self.out, self.update, self.id_column, self.rows_per_shard = out, update, id_column, rows_per_shard
        self.next_index = update.next_index
        self._new: list[pa.Table] = []
        self._waiting: dict[str, list[pa.Table]] = {}  # holder shard -> replacement rows
        self._waiting_bytes = 0
        self._remove: dict[str, set] = {k: set(v) for k, v in update.withdrawn.items()}
        self._errors: list[pa.Table] = [update.reader_errors]
        self.embedded_ids: list[pa.Array] = []
        self.embedded = self.new_shards = self.bytes_written = self.bytes_rewritten = self.shards_rewritten = 0

    def __call__(self, shard_index: int, data: pa.Table, errors: pa.Table, stats: dict) -> None:
        """The `ShardAssembler` sink: route one input shard's embedded rows and errors."""
        holders = self.update.holders
        if len(errors):
            self._errors.append(errors)
            for note_id in errors.column(self.id_column).to_pylist():
                if note_id in holders:  # changed, then failed in the model: the old vector goes too
                    self._remove.setdefault(holders[note_id], set()).add(note_id)
        ids = data.column(self.id_column).to_pylist()
        self.embedded += len(ids)
        self.embedded_ids.append(data.column(self.id_column).combine_chunks())
        known = [i in holders for i in ids]
        for position, note_id in enumerate(ids):
            if known[position]:
                row = data.slice(position, 1)
                self._waiting.setdefault(holders[note_id], []).append(row)
                self._waiting_bytes += row.nbytes
        self._new.append(data.filter(pa.array([not k for k in known], pa.bool_())))
        while sum(map(len, self._new)) >= self.rows_per_shard:
            self._write_new(self.rows_per_shard)
        if self._waiting_bytes > FLUSH_BYTES:
            self._rewrite_holders()

    def finish(self) -> pa.Table:
        """Write what is still held; returns this update's error rows (for `merge_errors`)."""
        if self._new:
            self._write_new(sum(map(len, self._new)))
        self._rewrite_holders()
        return pa.concat_tables(self._errors)

    def _write_new(self, n: int) -> None:
        rows = pa.concat_tables(self._new)
        if n:
            shard = rows.slice(0, n).combine_chunks()
            tokens = int(pc.sum(shard.column(N_TOKENS)).as_py() or 0)
            name = shard_name(self.next_index)
            self.out.write_table(name, shard, metadata={"rows": n, "embedded": n, "errored": 0, "tokens": tokens})
            self.next_index += 1
            self.new_shards += 1
            self.bytes_written += self.out.fs.get_file_info(self.out.full(name)).size
        self._new = [rows.slice(n)] if n < len(rows) else []

    def _rewrite_holders(self) -> None:
        for name in sorted(set(self._waiting) | set(self._remove)):
            replacements = pa.concat_tables(self._waiting.get(name, [])) if name in self._waiting else None
            removed = self._remove.get(name)
            written = edit_shard(
                self.out,
                name,
                self.id_column,
                replacements,
                pa.array(sorted(removed)) if removed else None,
            )
            self.bytes_rewritten += written
            self.shards_rewritten += 1
        self._waiting.clear()
        self._remove.clear()
        self._waiting_bytes = 0


def merge_errors(out: OutputDir, new_errors: pa.Table, update: UpdatePlan, embedded_now: pa.Array) -> int:
    """`_errors.parquet` after an update: the earlier rows of files this update did not read, less
    those whose note is now embedded (a duplicate's row stays: its first occurrence is what is
    embedded), then this update's rows. Returns the rows listed."""
    uris = pa.array([f.uri for f in update.plan.files], pa.string())
    if out.exists(ERRORS):
        old = out.read_table(ERRORS).replace_schema_metadata(None)
        id_column = old.schema.names[0]
        embedded = pa.concat_arrays([update.existing_ids, embedded_now.cast(update.existing_ids.type)])
        resolved = pc.and_(
            pc.is_in(old.column(id_column), value_set=embedded),
            pc.invert(pc.starts_with(pc.fill_null(old.column(ERROR_REASON), ""), DUPLICATE_REASON)),
        )
        stale = pc.or_(pc.is_in(old.column(ERROR_FILE), value_set=uris), resolved)
        kept = old.filter(pc.invert(pc.fill_null(stale, False)))
        new_errors = pa.concat_tables([kept, new_errors.cast(kept.schema)])
    merged = new_errors.sort_by([(ERROR_FILE, "ascending"), (ERROR_ROW, "ascending")])
    out.write_table(ERRORS, merged)
    return len(merged)
