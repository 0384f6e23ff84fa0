"""The embedding job on Ray Data: read -> check -> tokenize (CPU) -> embed (actor per GPU) -> shards.

This is the only module that imports `ray`. The stages themselves (`readers`, `tokenization`,
`embedding`, `assembler`) are plain functions and classes on pyarrow tables.

Flow: `plan_inputs` checks every file and cuts the corpus into shards on the driver (fail fast,
before any GPU work); a Ray `Datasource` reads the pending shards; tokenization is fused into
the read tasks, which also cut the stream into blocks of one window (`window_rows` rows); an
actor pool embeds one window per task, so each window's vectors reach the driver as soon as it
is done; the driver writes each shard the moment its last row is back (`_stream`, with
`progress.Progress` saying how far it is). A rerun skips finished shards.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass

import pyarrow.compute as pc
import ray
import ray.data
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from embednv.config import DEFAULT_BATCH_TOKENS, EmbedConfig
from embednv.embedding import N_TOKENS_OUT, EmbedWorker
from embednv.manifest import build_manifest, changed_fields, fingerprint, fingerprint_fields, now
from embednv.models.registry import resolve_model
from embednv.output import ERROR_PARTS, ERRORS, MANIFEST, SUCCESS, OutputDir
from embednv.progress import Progress
from embednv.readers import ERROR
from embednv.sources import InputPlan, Shard, plan_inputs

log = logging.getLogger(__name__)


class OutputConflict(ValueError):
    """The output directory holds another run's results."""


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

    def line(self) -> str:
        if self.already_complete:
            return f"{self.out} is already complete ({self.embedded:,} notes embedded, {self.errored:,} errors): nothing to do"
        rate = self.processed / self.seconds if self.seconds else 0.0
        token_rate = self.processed_tokens / self.seconds if self.seconds else 0.0
        return (
            f"embedded {self.embedded:,} of {self.rows_in:,} notes ({self.errored:,} errors) | "
            f"{self.tokens:,} tokens | {rate:,.1f} notes/s | {token_rate:,.0f} tokens/s | "
            f"padding efficiency {self.padding_efficiency:.3f} | output {self.out}"
        )


class ClusterUnreachable(ConnectionError):
    """The Ray address given (flag or RAY_ADDRESS) does not answer."""


CONNECT_TIMEOUT_S = 30.0
# Ray's GCS keeps the events of its last 100,000 tasks (about 1.5 KB each, so it grows for the
# first hours of a long run, measured in docs/benchmarks.md). Nothing reads them in a private
# instance without a dashboard, so it keeps a few; a cluster sets its own (cluster/README.md).
PRIVATE_TASK_EVENTS = 1_000


def init_ray(debug: bool = False, address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as `ray job submit` sets it), else start a private one.

    Without an address Ray would join whatever cluster its address file names (written by any
    earlier `ray start`, even one long dead) and wait on it forever: `address="local"` always
    starts a fresh instance instead. A given address must answer within CONNECT_TIMEOUT_S.
    """
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry leaves the machine
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = dict(log_to_driver=debug, logging_level=logging.INFO if debug else logging.WARNING)
        if address:
            address = reachable_address(address)
            os.environ["RAY_ADDRESS"] = address  # Ray prefers the variable over the argument: keep them one
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", include_dashboard=False,
                     _system_config={"task_events_max_num_task_in_gcs": PRIVATE_TASK_EVENTS}, **kwargs)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = debug
    context.print_on_execution_start = debug
    logging.getLogger("ray.data").setLevel(logging.INFO if debug else logging.WARNING)


def reachable_address(address: str) -> str:
    """`address` once its GCS port accepts a connection; ClusterUnreachable after CONNECT_TIMEOUT_S.

    "auto" is resolved the way Ray does (its address file, then running GCS processes).
    """
    import socket

    resolved = address
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            resolved = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise ClusterUnreachable("no running Ray cluster found for address 'auto' (start one, or unset RAY_ADDRESS)") from None
    host, _, port = resolved.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return resolved  # a form Ray parses itself; let it answer
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return resolved
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ClusterUnreachable(
                    f"Ray cluster at {resolved} did not answer within {CONNECT_TIMEOUT_S:.0f}s ({error.strerror or error}); "
                    "check --address / RAY_ADDRESS, or unset it to run on a private local Ray"
                ) from None
            time.sleep(1.0)


def run_embed(config: EmbedConfig) -> RunSummary:
    started = time.time()
    # Check every input before starting Ray or loading a model: a bad file fails in seconds.
    plan = plan_inputs(list(config.inputs), config.id_column, config.text_column, config.rows_per_shard, config.skip_bad_files)
    init_ray(config.debug, config.address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    # An autoscaling cluster may have no GPU node yet: asking for GPUs is enough to wait for one.
    wants_gpus = bool(gpus or config.num_gpus or config.max_gpus)
    device = config.device if config.device != "auto" else ("cuda" if wants_gpus else "cpu")
    if device == "cuda" and not wants_gpus:
        raise ValueError("--device cuda, but the Ray cluster has no GPU (on an autoscaling cluster, pass --num-gpus or --max-gpus)")
    ref = resolve_model(config.model, has_gpu=device == "cuda", max_tokens=config.max_tokens, allow_download=config.allow_download)
    dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    batch_tokens = config.batch_tokens or DEFAULT_BATCH_TOKENS[device]

    out = OutputDir(config.out)
    fields = fingerprint_fields(config, ref, plan, dtype)
    if _prepare_output(out, fields, config.overwrite):
        return _summarise(out, plan, started, processed=0, processed_tokens=0, already_complete=True)
    out.remove_stale_temporaries()
    finished = out.finished_shards()
    pending = [s for s in plan.shards if s.index not in finished]
    if finished:
        log.info("resuming: %d of %d shards already written", len(plan.shards) - len(pending), len(plan.shards))
    manifest = build_manifest(config, ref, plan, device, dtype, batch_tokens, fields)
    out.write_text(MANIFEST, _json(manifest))

    from embednv.assembler import ShardAssembler

    assembler = ShardAssembler(plan, out, config.id_column, ref.dim)
    if pending:
        actors = _actor_pool_size(config, device, gpus)
        pending_rows = sum(s.n_rows for s in pending)
        log.info(
            "%s rows in %d file%s -> %d shards (%d to write, %s rows) | model %s (%d-d) on %s, %s | %s embedding actor%s",
            f"{plan.n_rows:,}", len(plan.files), "" if len(plan.files) == 1 else "s", len(plan.shards), len(pending),
            f"{pending_rows:,}", ref.name, ref.dim, device, dtype,
            "-".join(map(str, actors)) if isinstance(actors, tuple) else actors, "" if actors == 1 else "s",
        )
        events = _events_queue()
        dataset = _build_dataset(config, ref, plan, pending, device, dtype, batch_tokens, actors, events)
        progress = Progress(pending_rows, len(plan.shards), len(finished), config.log_every, poll_events=lambda: _drain(events))
        _stream(dataset, assembler, progress)
    lost = assembler.incomplete()
    if lost:  # a bug, never a silent loss: say exactly which shards are short
        raise RuntimeError(f"rows missing from shards (arrived, expected): {lost}")

    processed = sum(s["rows"] for s in assembler.written)
    summary = _summarise(out, plan, started, processed, sum(s["window_tokens"] for s in assembler.written))
    _combine_errors(out, assembler)
    manifest.update(
        status="complete", rows_embedded=summary.embedded, rows_errored=summary.errored, tokens=summary.tokens,
        padding_efficiency=round(summary.padding_efficiency, 4), finished_at=now(), seconds_this_run=round(summary.seconds, 2),
        notes_per_second=round(processed / summary.seconds, 2) if summary.seconds else None,
    )
    out.write_text(MANIFEST, _json(manifest))
    out.write_text(SUCCESS, "")
    return summary


def _prepare_output(out: OutputDir, fields: dict, overwrite: bool) -> bool:
    """True when the output is already complete for this exact run; refuses another run's output."""
    previous = out.read_json(MANIFEST)
    if overwrite:
        out.clear()
        return False
    if previous is None:
        if out.finished_shards():
            raise OutputConflict(f"{out.uri} holds part-*.parquet files but no {MANIFEST}; use --overwrite or another --out")
        return False
    if previous.get("fingerprint") != fingerprint(fields):
        differing = changed_fields(previous.get("fingerprint_fields", {}), fields)
        raise OutputConflict(
            f"{out.uri} holds the output of a different run ({', '.join(differing) or 'settings'} changed); "
            "use --overwrite to replace it or choose another --out"
        )
    return out.exists(SUCCESS)


def _actor_pool_size(config: EmbedConfig, device: str, gpus: int) -> int | tuple[int, int]:
    if device != "cuda":
        return 1  # one CPU actor; its torch threads use the whole node
    # A fixed pool of every GPU present, or a range the autoscaler can grow into.
    return (config.num_gpus or 1, config.max_gpus) if config.max_gpus else (config.num_gpus or gpus)


READ_AHEAD_BYTES = 64 << 20  # tokenized notes waiting for an actor: enough to keep it fed
WINDOWS_PER_ACTOR = 4  # embedded windows per actor that may wait in the object store for the driver


def object_store_budget(actors: int | tuple[int, int], window_rows: int, dim: int) -> int:
    """Bytes of Ray's object store this run may fill: a small read-ahead plus a few windows per actor.

    Left to itself Ray Data reads and tokenizes as far ahead as half the object store allows
    (the whole corpus, on a machine where reading outpaces the model), which shows as reader
    memory that grows with the corpus. The model is the bottleneck, so a short read-ahead
    costs nothing; the windows' share keeps every actor busy while the driver catches up.
    """
    n_actors = actors[1] if isinstance(actors, tuple) else actors
    window_bytes = window_rows * (dim * 4 + 64)  # float32 vectors plus the ids and counters
    return READ_AHEAD_BYTES + n_actors * WINDOWS_PER_ACTOR * window_bytes


def _build_dataset(config, ref, plan, pending, device, dtype, batch_tokens, actors, events):
    from ray.data import ExecutionResources

    from embednv.tokenization import tokenize_table

    context = ray.data.DataContext.get_current()
    context.execution_options.resource_limits = ExecutionResources.for_limits(
        object_store_memory=object_store_budget(actors, config.window_rows, ref.dim)
    )

    source = NotesDatasource(plan, pending, config.id_column, config.text_column)
    # One block per read task: left to itself, Ray Data splits each task's output into many
    # small blocks (down to a row each on small corpora) to reach 200, which only adds overhead.
    dataset = ray.data.read_datasource(source, override_num_blocks=source.num_tasks())
    # Tokenize on CPU workers, in the read tasks.
    dataset = dataset.map_batches(
        tokenize_table, fn_kwargs={"ref": ref, "instruction": config.instruction}, batch_format="pyarrow", batch_size=None
    )
    # Cut the stream into blocks of exactly one window, so that each actor task embeds one window
    # and its vectors travel to the driver when that window is done. Without this, a task takes a
    # whole read block (a shard, or a whole CSV file) and Ray holds every finished window of it
    # in the actor's output buffer until the task ends: a crash then loses all of them.
    dataset = dataset.repartition(target_num_rows_per_block=config.window_rows, strict=True)
    resources = {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}  # one actor pinned per GPU
    return dataset.map_batches(
        _ReportingEmbedWorker,
        fn_constructor_kwargs=dict(events=events, ref=ref, device=device, dtype=dtype, instruction=config.instruction,
                                   batch_tokens=batch_tokens, threads=config.cpu_threads),
        batch_size=None,  # one block = one window (above): length-bucketed within it
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1]) if isinstance(actors, tuple)
        else ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )


class _ReportingEmbedWorker(EmbedWorker):
    """The embed actor, which also tells the driver when its model is loaded and how long it took."""

    def __init__(self, events, **kwargs):
        started = time.perf_counter()
        super().__init__(**kwargs)
        where = f"{kwargs['device']} on {socket.gethostname()}"
        try:
            events.put_nowait(("model_loaded", time.perf_counter() - started, where))
        except Exception:  # noqa: BLE001 - a lost progress message must never stop the actor
            pass


def _events_queue():
    """A zero-CPU queue from actors to the driver's progress reporter."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


def _drain(events) -> list:
    n = events.size()
    return events.get_nowait_batch(n) if n else []


def _stream(dataset, assembler, progress: Progress) -> None:
    """Pull embedded windows to the driver and write each shard the moment its last row is back."""
    with progress:
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            done = assembler.add(block)
            ok = block.column(ERROR).is_null()
            tokens = pc.sum(pc.if_else(ok, block.column(N_TOKENS_OUT), 0)).as_py() or 0
            progress.add(len(block), int(tokens), len(done))
    if not progress.interactive:
        log.info(progress.line())


def _summarise(out, plan, started, processed, processed_tokens, already_complete=False) -> RunSummary:
    totals = defaultdict(int)
    for name in sorted(out.names()):
        if name.startswith("part-") and name.endswith(".parquet"):
            _, stats = out.shard_stats(name)
            for key, value in stats.items():
                totals[key] += value
    return RunSummary(
        out.uri, already_complete, plan.n_rows, totals["embedded"], totals["errored"], totals["tokens"],
        totals["window_tokens"] / totals["padded_tokens"] if totals["padded_tokens"] else 1.0,
        time.time() - started, processed, processed_tokens,
    )


def _combine_errors(out: OutputDir, assembler) -> None:
    import pyarrow as pa

    parts = [out.read_table(f"{ERROR_PARTS}/{name}") for name in out.names(ERROR_PARTS) if name.endswith(".parquet")]
    errors = pa.concat_tables(parts).sort_by([("file", "ascending"), ("row", "ascending")]) if parts else assembler.error_schema.empty_table()
    out.write_table(ERRORS, errors)
    out.delete(ERROR_PARTS)


def _json(payload: dict) -> str:
    import json

    return json.dumps(payload, indent=2, default=str) + "\n"


def _read_file_shards(file, shards, id_column, text_column, duplicates):
    from embednv.readers import read_shards

    yield from read_shards(file, shards, id_column, text_column, duplicates)


class NotesDatasource(Datasource):
    """One read task per Parquet shard (row-group ranges) or per CSV/JSONL file (streamed once)."""

    def __init__(self, plan: InputPlan, pending: list[Shard], id_column: str, text_column: str):
        self.plan, self.pending, self.id_column, self.text_column = plan, pending, id_column, text_column

    def estimate_inmemory_data_size(self):
        return None

    def num_tasks(self) -> int:
        return len(self._task_groups())

    def _task_groups(self) -> list[tuple[int, list[Shard]]]:
        """(file, shards) per read task: one per Parquet shard (row groups), one per CSV/JSONL file."""
        by_file: dict[int, list[Shard]] = defaultdict(list)
        for shard in self.pending:
            by_file[shard.file].append(shard)
        return [
            (file_index, group)
            for file_index, shards in sorted(by_file.items())
            for group in ([[s] for s in shards] if self.plan.files[file_index].format == "parquet" else [shards])
        ]

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        tasks = []
        for file_index, group in self._task_groups():
            file = self.plan.files[file_index]
            # Only this task's duplicate rows travel with it, not the whole corpus's.
            repeated = frozenset(
                r for r in self.plan.duplicates.get(file_index, ()) if any(s.start <= r < s.stop for s in group)
            )
            read = functools.partial(_read_file_shards, file, group, self.id_column, self.text_column, repeated)
            meta = BlockMetadata(num_rows=sum(s.n_rows for s in group), size_bytes=None, exec_stats=None, input_files=(file.uri,))
            tasks.append(ReadTask(read, meta))
        return tasks
