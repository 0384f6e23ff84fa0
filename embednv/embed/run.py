"""One embedding run from start to end, without Ray: plan, resume, execute, finish.

`run_embed` is the whole policy in order; the Ray wiring it calls (`ray_job`) only moves rows.
Resume lives in `pending_shards`: a shard is done when its file exists under its final name
(written atomically), so a rerun embeds exactly the shards that are missing, and
`check_output` refuses to resume into the output of a run with other settings.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from embednv.columns import ERROR_FILE, ERROR_ROW
from embednv.directories import ERROR_PARTS, ERRORS, MANIFEST, MAP, SUCCESS, OutputDir
from embednv.embed.assemble import ShardAssembler
from embednv.embed.config import DEFAULT_BATCH_TOKENS, EmbedConfig, check_executor, default_dtype
from embednv.embed.inputs import InputPlan, Shard
from embednv.embed.manifest import build_manifest, changed_fields, fingerprint, fingerprint_fields, now
from embednv.embed.plan import check_output_apart, plan_inputs
from embednv.errors import ConfigError, OutputConflict
from embednv.models.base import ModelRef
from embednv.models.registry import check_model_name, resolve_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    out: str
    already_complete: bool
    rows_in: int
    embedded: int
    errored: int
    tokens: int
    padding_efficiency: float
    seconds: float
    processed: int  # notes that went through the model in this run (0 when already complete)
    processed_tokens: int
    # Seconds per stage of this run (load, read, tokenize, embed, write) where the executor runs
    # them one after another (executor "local"); empty under Ray, whose stages overlap.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    update: dict | None = None  # `--update`: this update's record, as the manifest keeps it

    def line(self) -> str:
        if self.update:
            u = self.update
            return (
                f"updated {self.out}: embedded {u['embedded']:,} notes ({u['new']:,} new, {u['changed']:,} changed; "
                f"{u['errors']:,} errors), {u['unchanged']:,} unchanged | {self.embedded:,} notes in all | "
                f"{u['bytes_rewritten'] / 1e6:,.1f} MB rewritten in {u['shards_rewritten']} shards | {self.seconds:,.1f}s"
            )
        if self.already_complete:
            return f"{self.out} is already complete ({self.embedded:,} notes embedded, {self.errored:,} errors): nothing to do"
        rate = self.processed / self.seconds if self.seconds else 0.0
        token_rate = self.processed_tokens / self.seconds if self.seconds else 0.0
        return (
            f"embedded {self.embedded:,} of {self.rows_in:,} notes ({self.errored:,} errors) | "
            f"{self.tokens:,} tokens | {rate:,.1f} notes/s | {token_rate:,.0f} tokens/s | "
            f"padding efficiency {self.padding_efficiency:.3f} | output {self.out}"
        )


def run_embed(config: EmbedConfig) -> RunSummary:
    """Embed every pending shard of `config.inputs` into `config.out` with `config.executor`; see the module docstring."""
    started = time.time()
    check_executor(config)
    # Check every input before starting Ray or loading a model: a bad file fails in seconds.
    check_output_apart(config.out, list(config.inputs))
    if OutputDir(config.out).kind() == MAP:  # another command's output: never replaced, --overwrite included
        raise OutputConflict(f"{config.out} holds a map (embednv map's output); give embed a directory of its own")
    plan = plan_inputs(
        list(config.inputs),
        config.id_column,
        config.text_column,
        config.rows_per_shard,
        config.skip_bad_files,
        config.id_type,
    )
    if not isinstance(config.model, ModelRef):
        check_model_name(config.model)  # a misspelt --model fails before a Ray start, not after
    if config.executor == "local":
        from embednv.embed import local_job as executor

        gpus = executor.visible_gpus()
    else:
        from embednv.embed import ray_job as executor  # the only embed module that imports Ray

        gpus = executor.connect(config.debug, config.address)
    device = choose_device(config, gpus)
    ref = (
        config.model
        if isinstance(config.model, ModelRef)  # resolved by code (a benchmark's model)
        else resolve_model(
            config.model, has_gpu=device == "cuda", max_tokens=config.max_tokens, allow_download=config.allow_download
        )
    )
    dtype = default_dtype(config.dtype, device)
    batch_tokens = config.batch_tokens or DEFAULT_BATCH_TOKENS[device]

    out = OutputDir(config.out)
    fields = fingerprint_fields(config, ref, plan, dtype)
    previous = out.manifest()
    if config.update and previous is not None and previous.get("status") == "running":
        if previous.get("fingerprint") != fingerprint(fields):  # a first run cut short, into which --update cannot go
            raise OutputConflict(
                f"{out.uri} holds a run that never finished: rerun that command to finish it, then --update"
            )
    elif config.update and previous is not None:  # finished embeddings (else a first run, or its resume)
        return _update(config, out, previous, plan, fields, ref, device, dtype, batch_tokens, executor, gpus, started)
    if check_output(out, fields, config.overwrite):
        return summarise(out, plan, started, processed=0, processed_tokens=0, already_complete=True)
    pending = pending_shards(out, plan)
    manifest = build_manifest(config, ref, plan, device, dtype, batch_tokens, fields)
    out.write_text(MANIFEST, to_json(manifest))

    assembler = ShardAssembler(plan, out, config.id_column, ref.dim)
    stage_seconds: dict[str, float] = {}
    if pending:
        actors = actor_pool_size(config, device, gpus)
        where = (
            "in this process"
            if config.executor == "local"
            else f"{_actors(actors)} embedding actor{'' if actors == 1 else 's'}"
        )
        log.info(
            "%s rows in %d file%s -> %d shards (%d to write, %s rows) | model %s (%d-d) on %s, %s | %s",
            f"{plan.n_rows:,}",
            len(plan.files),
            "" if len(plan.files) == 1 else "s",
            len(plan.shards),
            len(pending),
            f"{sum(s.n_rows for s in pending):,}",
            ref.name,
            ref.dim,
            device,
            dtype,
            where,
        )
        if config.executor == "local":
            stage_seconds = executor.embed_shards(config, ref, plan, pending, device, dtype, batch_tokens, assembler)
        else:
            executor.embed_shards(config, ref, plan, pending, device, dtype, batch_tokens, actors, assembler)
    lost = assembler.incomplete()
    if lost:  # a bug, never a silent loss: say exactly which shards are short
        raise RuntimeError(f"rows missing from shards (arrived, expected): {lost}")

    processed = sum(s["rows"] for s in assembler.written)
    summary = summarise(out, plan, started, processed, sum(s["window_tokens"] for s in assembler.written))
    summary = replace(summary, stage_seconds={k: round(v, 3) for k, v in stage_seconds.items()})
    combine_errors(out, assembler)
    manifest.update(
        status="complete",
        rows_embedded=summary.embedded,
        rows_errored=summary.errored,
        tokens=summary.tokens,
        padding_efficiency=round(summary.padding_efficiency, 4),
        finished_at=now(),
        seconds_this_run=round(summary.seconds, 2),
        notes_per_second=round(processed / summary.seconds, 2) if summary.seconds else None,
        stage_seconds=summary.stage_seconds or None,
    )
    out.write_text(MANIFEST, to_json(manifest))
    out.write_text(SUCCESS, "")
    return summary


def _update(config, out, previous, plan, fields, ref, device, dtype, batch_tokens, executor, gpus, started):
    """`--update` on finished embeddings: embed/update_run.py, with this run's executor."""
    from embednv.embed.update_run import run_update

    def embed(pending, assembler):
        if config.executor == "local":
            return executor.embed_shards(config, ref, assembler.plan, pending, device, dtype, batch_tokens, assembler)
        actors = actor_pool_size(config, device, gpus)
        executor.embed_shards(config, ref, assembler.plan, pending, device, dtype, batch_tokens, actors, assembler)

    record = run_update(config, out, previous, plan, fields, ref.dim, embed, to_json)
    summary = summarise(out, plan, started, record["embedded"], 0)
    return replace(summary, errored=record_errors(out), update=record)


def record_errors(out: OutputDir) -> int:
    return out.shard_stats(ERRORS)[0] if out.exists(ERRORS) else 0


def _actors(actors: int | tuple[int, int]) -> str:
    return "-".join(map(str, actors)) if isinstance(actors, tuple) else str(actors)


def choose_device(config: EmbedConfig, gpus: int) -> str:
    """cuda when asked for or when the cluster has (or may scale up) GPUs; else cpu."""
    # An autoscaling cluster may have no GPU node yet: asking for GPUs is enough to wait for one.
    wants_gpus = bool(gpus or config.num_gpus or config.max_gpus)
    device = config.device if config.device != "auto" else ("cuda" if wants_gpus else "cpu")
    if device == "cuda" and not wants_gpus:
        raise ConfigError(
            "--device cuda, but the Ray cluster has no GPU (on an autoscaling cluster, pass --num-gpus or --max-gpus)"
        )
    return device


def actor_pool_size(config: EmbedConfig, device: str, gpus: int) -> int | tuple[int, int]:
    """Embedding actors: one per GPU (fixed, or a range the autoscaler grows into); one on CPU."""
    if device != "cuda":
        return 1  # one CPU actor; its torch threads use the whole node
    return (config.num_gpus or 1, config.max_gpus) if config.max_gpus else (config.num_gpus or gpus)


def check_output(out: OutputDir, fields: dict, overwrite: bool) -> bool:
    """True when the output is already complete for this exact run; refuses another run's output."""
    previous = out.read_json(MANIFEST)
    if overwrite:
        out.clear()
        return False
    if previous is None:
        if out.finished_shards():
            raise OutputConflict(
                f"{out.uri} holds part-*.parquet files but no {MANIFEST}; use --overwrite or another --out"
            )
        return False
    if previous.get("fingerprint") != fingerprint(fields):
        differing = changed_fields(previous.get("fingerprint_fields", {}), fields)
        raise OutputConflict(
            f"{out.uri} holds the output of a different run ({', '.join(differing) or 'settings'} changed); "
            "use --overwrite to replace it, --update to embed only its new and changed notes, or choose another --out"
        )
    return out.exists(SUCCESS)


def pending_shards(out: OutputDir, plan: InputPlan) -> list[Shard]:
    """Resume: the planned shards not yet on disk, after removing what a killed run half-wrote."""
    out.remove_stale_temporaries()
    finished = out.finished_shards()
    pending = [s for s in plan.shards if s.index not in finished]
    if finished:
        log.info("resuming: %d of %d shards already written", len(plan.shards) - len(pending), len(plan.shards))
    return pending


def summarise(
    out: OutputDir,
    plan: InputPlan,
    started: float,
    processed: int,
    processed_tokens: int,
    already_complete: bool = False,
) -> RunSummary:
    """Totals over every shard on disk (this run's and earlier ones'), from the shard footers alone."""
    totals: dict[str, int] = defaultdict(int)
    for name in out.shard_names():
        _, stats = out.shard_stats(name)
        for key, value in stats.items():
            if isinstance(value, int):  # an edited shard's footer also names its edit
                totals[key] += value
    return RunSummary(
        out.uri,
        already_complete,
        plan.n_rows,
        totals["embedded"],
        totals["errored"],
        totals["tokens"],
        totals["window_tokens"] / totals["padded_tokens"] if totals["padded_tokens"] else 1.0,
        time.time() - started,
        processed,
        processed_tokens,
    )


def combine_errors(out: OutputDir, assembler: ShardAssembler) -> None:
    """Merge the per-shard error files into one `_errors/errors.parquet`, sorted by file and row."""
    import pyarrow as pa

    parts = [out.read_table(f"{ERROR_PARTS}/{name}") for name in out.names(ERROR_PARTS) if name.endswith(".parquet")]
    errors = (
        pa.concat_tables(parts).sort_by([(ERROR_FILE, "ascending"), (ERROR_ROW, "ascending")])
        if parts
        else assembler.error_schema.empty_table()
    )
    out.write_table(ERRORS, errors)
    out.delete(ERROR_PARTS)


def to_json(payload: dict) -> str:
    return json.dumps(payload, indent=2, default=str) + "\n"
