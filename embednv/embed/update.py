"""`embed --update`, planned before any model loads: which notes are new, changed or unchanged.

A note is identified by its id and compared by `text_sha256`, the hash of the exact text the
model saw (the instruction, max tokens and model are fixed per directory, so they need no hash:
`check_compatible` refuses any difference). Planning reads the directory's id and hash columns
only, never a vector, and streams the inputs file by file through the same reader a run uses
(its hash column is the one the shards get). The result is the ordinary plan with each shard's
`rows` narrowed to the new and changed notes, so both executors run it unchanged; where each
result goes (a new shard, or its old shard rewritten) is `update_writer`'s job.

Resume is a rerun: whatever an interrupted update wrote already carries its new hash, so the
same command plans only what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import ERROR, ERROR_FILE, ERROR_REASON, ERROR_ROW, HASH, ROW, SHARD, TEXT_HASH
from embednv.directories import MANIFEST, OutputDir
from embednv.embed.inputs import InputPlan
from embednv.embed.read import read_shards
from embednv.errors import OutputConflict

log = logging.getLogger(__name__)

# What must match between the directory and an update (the fingerprint's fields, less the inputs'
# sizes and mtimes and the shard size, which an update may change).
UPDATE_FIELDS = ("model", "id_column", "id_type", "text_column", "instruction", "max_tokens", "dtype")
_OLD_HASH, _HOLDER = "__old_sha256", "__holder"


@dataclass(frozen=True)
class UpdatePlan:
    plan: InputPlan  # every shard's `rows` narrowed to its new and changed notes
    holders: dict  # id -> shard name, for every note whose row in the directory is replaced or removed
    withdrawn: dict[str, frozenset]  # shard name -> ids whose new text cannot be embedded: their rows go
    reader_errors: pa.Table  # the inputs' rows that cannot be embedded (errors-file schema, less nothing)
    existing_ids: pa.Array  # every id in the directory before the update
    new: int
    changed: int
    unchanged: int
    next_index: int  # the first free shard number: new notes go to part-{next_index}.parquet onwards

    @property
    def pending(self) -> list:
        return [s for s in self.plan.shards if s.n_rows]

    def line(self) -> str:
        text = (
            f"update: {self.new:,} new, {self.changed:,} changed, {self.unchanged:,} unchanged notes "
            f"({self.new + self.changed:,} to embed)"
        )
        if len(self.reader_errors):
            gone = sum(len(ids) for ids in self.withdrawn.values())
            n = len(self.reader_errors)
            text += f"; {n:,} row{'' if n == 1 else 's'} cannot be embedded ({gone:,} of them replace a vector)"
        return text


def check_compatible(out: OutputDir, manifest: dict, fields: dict) -> None:
    """Refuse, in one line naming the fields, an update whose settings would mix two kinds of vector."""
    old = manifest.get("fingerprint_fields", {})
    differing = [k for k in UPDATE_FIELDS if old.get(k) != fields.get(k)]
    if differing:
        raise OutputConflict(
            f"{out.uri} was embedded with another {', '.join(differing)}; --update must use the same "
            f"(see its {MANIFEST}), or use --overwrite to re-embed everything"
        )


def plan_update(out: OutputDir, plan: InputPlan, id_column: str, text_column: str, id_type: str) -> UpdatePlan:
    """Compare the inputs' (id, text hash) with the directory's and narrow `plan` to what must be embedded."""
    existing = _existing(out, id_column, plan.id_type)
    incoming, errors, error_rows = _incoming(plan, id_column, text_column, id_type)
    joined = incoming.join(existing, keys=id_column, join_type="left outer")
    old_hash = joined.column(_OLD_HASH)
    is_new = old_hash.is_null()
    is_changed = pc.fill_null(pc.not_equal(old_hash, joined.column(HASH)), False)  # null: new
    todo = joined.filter(pc.or_(is_new, is_changed))
    changed = joined.filter(is_changed)
    holders = dict(zip(changed.column(id_column).to_pylist(), changed.column(_HOLDER).to_pylist()))

    # A note already embedded whose row now has an error (its first occurrence: not a duplicate)
    # is withdrawn: its old vector is no longer its current one, and the error row says why.
    gone = error_rows.join(existing, keys=id_column, join_type="inner")
    withdrawn: dict[str, set] = {}
    for note_id, holder in zip(gone.column(id_column).to_pylist(), gone.column(_HOLDER).to_pylist()):
        withdrawn.setdefault(holder, set()).add(note_id)
        holders[note_id] = holder

    rows: dict[int, set[int]] = {}
    for shard, row in zip(todo.column(SHARD).to_pylist(), todo.column(ROW).to_pylist()):
        rows.setdefault(shard, set()).add(row)
    shards = tuple(replace(s, rows=frozenset(rows.get(s.index, ()))) for s in plan.shards)
    indices = sorted(out.finished_shards())
    return UpdatePlan(
        plan=replace(plan, shards=shards),
        holders=holders,
        withdrawn={k: frozenset(v) for k, v in withdrawn.items()},
        reader_errors=errors,
        existing_ids=existing.column(id_column).combine_chunks(),
        new=int(pc.sum(is_new).as_py() or 0),
        changed=len(changed),
        unchanged=len(joined) - len(todo),
        next_index=max(indices, default=-1) + 1,
    )


def _existing(out: OutputDir, id_column: str, id_type: pa.DataType) -> pa.Table:
    """(id, hash, shard name) of every note in the directory: two columns read per shard, no vector."""
    import pyarrow.parquet as pq

    parts = []
    for name in out.shard_names():
        with out.fs.open_input_file(out.full(name)) as handle:
            shard = pq.ParquetFile(handle)
            if TEXT_HASH not in shard.schema_arrow.names:
                raise OutputConflict(
                    f"{out.uri}/{name} has no {TEXT_HASH} column (written before embednv kept a hash of each "
                    "note's text), so --update cannot tell changed notes; re-run with --overwrite"
                )
            table = shard.read(columns=[id_column, TEXT_HASH])
        parts.append(
            pa.table(
                {
                    id_column: table.column(0).cast(id_type),
                    _OLD_HASH: table.column(1),
                    _HOLDER: pa.array([name] * len(table), pa.string()),
                }
            )
        )
    schema = pa.schema([(id_column, id_type), (_OLD_HASH, pa.string()), (_HOLDER, pa.string())])
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _incoming(plan: InputPlan, id_column: str, text_column: str, id_type: str):
    """The inputs read as a run reads them: (valid rows' id, hash, shard, row), error rows, withdrawable ids."""
    valid, errors, withdrawable = [], [], []
    for file_index, file in enumerate(plan.files):
        shards = [s for s in plan.shards if s.file == file_index]
        duplicates = plan.duplicates.get(file_index, frozenset())
        for table in read_shards(file, shards, id_column, text_column, duplicates, id_type):
            table = table.select([id_column, HASH, ERROR, SHARD, ROW])
            ok = table.column(ERROR).is_null()
            valid.append(table.filter(ok).select([id_column, HASH, SHARD, ROW]))
            failed = table.filter(pc.invert(ok))
            if len(failed):
                errors.append(
                    pa.table(
                        {
                            id_column: failed.column(id_column),
                            ERROR_FILE: pa.array([file.uri] * len(failed), pa.string()),
                            ERROR_ROW: failed.column(ROW),
                            ERROR_REASON: failed.column(ERROR),
                        }
                    )
                )
                first = [
                    i is not None and r not in duplicates
                    for i, r in zip(failed.column(id_column).to_pylist(), failed.column(ROW).to_pylist())
                ]
                withdrawable.append(failed.filter(pa.array(first, pa.bool_())).select([id_column]))
    error_schema = pa.schema(
        [(id_column, plan.id_type), (ERROR_FILE, pa.string()), (ERROR_ROW, pa.int64()), (ERROR_REASON, pa.string())]
    )
    errors_table = pa.concat_tables([e.cast(error_schema) for e in errors]) if errors else error_schema.empty_table()
    ids_schema = pa.schema([(id_column, plan.id_type)])
    valid_schema = pa.schema([(id_column, plan.id_type), (HASH, pa.string()), (SHARD, pa.int32()), (ROW, pa.int64())])
    return (
        pa.concat_tables([v.cast(valid_schema) for v in valid]) if valid else valid_schema.empty_table(),
        errors_table,
        pa.concat_tables([w.cast(ids_schema) for w in withdrawable]) if withdrawable else ids_schema.empty_table(),
    )
