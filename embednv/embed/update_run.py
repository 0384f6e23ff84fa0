"""`embed --update` from start to end: plan the delta, embed it with the run's executor, place it, record it.

`run.run_embed` resolves the model, device and executor as for any run and hands over here when
`--out` already holds finished embeddings; the executor is passed in as `embed(pending,
assembler)`, so an update runs the very stages a run does, under either executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from embednv.directories import ERROR_PARTS, INDEX_RECORD, MANIFEST, OutputDir
from embednv.embed.assemble import ShardAssembler
from embednv.embed.config import EmbedConfig
from embednv.embed.inputs import InputPlan
from embednv.embed.manifest import now
from embednv.embed.update import check_compatible, plan_update
from embednv.embed.update_writer import UpdateWriter, merge_errors

log = logging.getLogger(__name__)


def run_update(
    config: EmbedConfig,
    out: OutputDir,
    manifest: dict,
    plan: InputPlan,
    fields: dict,
    dim: int,
    embed: Callable[[list, ShardAssembler], dict | None],  # returns the local executor's stage seconds
    to_json: Callable[[dict], str],
) -> dict:
    """Update `out` with the new and changed notes of `plan`; returns this update's record (also in the manifest)."""
    started = time.time()
    check_compatible(out, manifest, fields)
    out.remove_stale_temporaries()  # what a killed update was writing: never visible under a final name
    out.delete(ERROR_PARTS)  # only a run that never finished leaves parts; an update keeps its errors apart
    update = plan_update(out, plan, config.id_column, config.text_column, config.id_type)
    log.info(update.line())  # before any model loads
    manifest.update(status="updating")
    out.write_text(MANIFEST, to_json(manifest))

    writer = UpdateWriter(out, update, config.id_column, config.rows_per_shard)
    assembler = ShardAssembler(update.plan, out, config.id_column, dim, sink=writer)
    stages = (embed(update.pending, assembler) if update.pending else None) or {}  # local: seconds per stage
    lost = assembler.incomplete()
    if lost:  # a bug, never a silent loss
        raise RuntimeError(f"rows missing from shards (arrived, expected): {lost}")
    errors = writer.finish()
    listed = merge_errors(out, errors, update, _embedded(writer, update))
    if OutputDir(config.out).exists(INDEX_RECORD) and (writer.new_shards or writer.shards_rewritten):
        log.info("the cohort index in %s is now stale: run `embednv index %s` to rebuild it", "_index/", config.out)

    record = {
        "at": now(),
        "inputs": [f.uri for f in plan.files],
        "new": update.new,
        "changed": update.changed,
        "unchanged": update.unchanged,
        "embedded": writer.embedded,
        "errors": len(errors),
        "withdrawn": sum(len(v) for v in update.withdrawn.values()),
        "new_shards": writer.new_shards,
        "shards_rewritten": writer.shards_rewritten,
        "bytes_written": writer.bytes_written,
        "bytes_rewritten": writer.bytes_rewritten,
        "seconds": round(time.time() - started, 2),
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()} or None,
    }
    rows = sum(out.shard_stats(name)[0] for name in out.shard_names())
    manifest = out.manifest() or manifest  # `embednv index` or `map` may have added keys meanwhile
    manifest.setdefault("updates", []).append(record)
    manifest.update(status="complete", rows_embedded=rows, rows_errored=listed, finished_at=now())
    out.write_text(MANIFEST, to_json(manifest))
    return record


def _embedded(writer: UpdateWriter, update):
    import pyarrow as pa

    parts = [a.cast(update.existing_ids.type) for a in writer.embedded_ids]
    return pa.concat_arrays(parts) if parts else pa.array([], update.existing_ids.type)
