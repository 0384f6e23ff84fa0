"""The Ray wiring of an embedding run: connect, read -> tokenize -> embed on an actor pool, stream back.

This is the only embed module that imports `ray` (the map's is `mapping/ray_stage`); the policy
around it (planning, resume, summary) is `embednv.embed.run`. Flow: a Ray `Datasource` reads the pending shards; tokenization is
fused into the read tasks, which also cut the stream into blocks of one window (`window_rows`
rows); an actor pool embeds one window per task, so each window's vectors reach the driver as
soon as it is done; the driver hands every block to the `ShardAssembler`, which writes each
shard the moment its last row is back (`progress.Progress` says how far it is).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterator

import ray
import ray.data
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from embednv.embed.assemble import ShardAssembler
from embednv.embed.config import EmbedConfig
from embednv.embed.inputs import InputPlan, Shard
from embednv.embed.private_ray import PRIVATE_SYSTEM_CONFIG, daemon_malloc_conf, quiet_core_log
from embednv.embed.progress import ActorReport, Progress, block_counts
from embednv.embed.ray_address import answering
from embednv.embed.worker import EmbedWorker
from embednv.errors import ClusterUnreachable
from embednv.models.base import ModelRef

log = logging.getLogger(__name__)


def init_ray(debug: bool = False, address: str | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as `ray job submit` sets it), else start a private one.

    Without an address Ray would join whatever cluster its address file names (written by any
    earlier `ray start`, even one long dead) and wait on it forever: `address="local"` always
    starts a fresh instance instead, configured by `private_ray` and reachable from this machine
    only (`loopback_only`). A given address must answer in time (`ray_address`).
    """
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry leaves the machine
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = dict(log_to_driver=debug, logging_level=logging.INFO if debug else logging.WARNING)
        if address:
            address = reachable_address(address)
            os.environ["RAY_ADDRESS"] = address  # Ray prefers the variable over the argument: keep them one
            with quiet_core_log(debug):  # this process only: joining starts no daemon
                ray.init(address=address, **kwargs)
        else:
            with daemon_malloc_conf(), quiet_core_log(debug), loopback_only():
                ray.init(address="local", include_dashboard=False, _system_config=PRIVATE_SYSTEM_CONFIG, **kwargs)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = debug
    context.print_on_execution_start = debug
    logging.getLogger("ray.data").setLevel(logging.INFO if debug else logging.WARNING)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make the Ray that ray.init starts in this block listen on 127.0.0.1 only, every process of it.

    Each process Ray starts binds by the node's IP: its gRPC servers (GCS, raylet, object manager,
    workers) listen on 127.0.0.1 when the node IP is exactly that and on all interfaces otherwise;
    its agents and metrics servers do the same. On Linux ray.init replaces a loopback node IP with
    the machine's outward one, unless Ray runs as it does on macOS and Windows, local only
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read once when Ray is imported, hence the constant).
    """
    from ray._private import ray_constants

    was = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = was


def reachable_address(address: str) -> str:
    """`address` once it answers (`ray_address.answering`); "auto" is resolved the way Ray does
    (its address file, then running GCS processes)."""
    if address != "auto":
        return answering(address)
    from ray._private.services import get_ray_address_from_environment

    try:
        resolved = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise ClusterUnreachable(
            "no running Ray cluster found for address 'auto' (start one, or unset RAY_ADDRESS)"
        ) from None
    return answering(resolved)


def connect(debug: bool, address: str | None) -> int:
    """Start or join Ray (see `init_ray`); returns the GPUs the cluster has now."""
    init_ray(debug, address)
    return int(ray.cluster_resources().get("GPU", 0))


def embed_shards(
    config: EmbedConfig,
    ref: ModelRef,
    plan: InputPlan,
    pending: list[Shard],
    device: str,
    dtype: str,
    batch_tokens: int,
    actors: int | tuple[int, int],
    assembler: ShardAssembler,
) -> None:
    """Embed the rows of `pending` on an actor pool, handing every finished window to `assembler`."""
    events = _events_queue()
    dataset = _build_dataset(config, ref, plan, pending, device, dtype, batch_tokens, actors, events)
    progress = Progress(
        sum(s.n_rows for s in pending),
        len(plan.shards),
        len(plan.shards) - len(pending),
        config.log_every,
        poll_events=lambda: _drain(events),
    )
    _stream(dataset, assembler, progress)


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

    from embednv.embed.tokenize import tokenize_table

    context = ray.data.DataContext.get_current()
    context.execution_options.resource_limits = ExecutionResources.for_limits(
        object_store_memory=object_store_budget(actors, config.window_rows, ref.dim)
    )

    source = NotesDatasource(plan, pending, config.id_column, config.text_column, config.id_type)
    # One block per read task: left to itself, Ray Data splits each task's output into many
    # small blocks (down to a row each on small corpora) to reach 200, which only adds overhead.
    dataset = ray.data.read_datasource(source, override_num_blocks=source.num_tasks())
    # Tokenize on CPU workers, in the read tasks.
    dataset = dataset.map_batches(
        tokenize_table,
        fn_kwargs={"ref": ref, "instruction": config.instruction},
        batch_format="pyarrow",
        batch_size=None,
    )
    # Cut the stream into blocks of exactly one window, so that each actor task embeds one window
    # and its vectors travel to the driver when that window is done. Without this, a task takes a
    # whole read block (a shard, or a whole CSV file) and Ray holds every finished window of it
    # in the actor's output buffer until the task ends: a crash then loses all of them.
    dataset = dataset.repartition(target_num_rows_per_block=config.window_rows, strict=True)
    resources = {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}  # one actor pinned per GPU
    return dataset.map_batches(
        _ReportingEmbedWorker,
        fn_constructor_kwargs=dict(
            events=events,
            report_every=min(1.0, config.log_every),  # each second (the terminal's bar), or each log line if sooner
            ref=ref,
            device=device,
            dtype=dtype,
            batch_tokens=batch_tokens,
            threads=config.cpu_threads,
        ),
        batch_size=None,  # one block = one window (above): length-bucketed within it
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
        if isinstance(actors, tuple)
        else ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )


class _ReportingEmbedWorker(EmbedWorker):
    """The embed actor, which also tells the driver when its model is loaded and how far into a long window it is."""

    def __init__(self, events, report_every: float, **kwargs):
        started = time.perf_counter()
        super().__init__(**kwargs)
        report = ActorReport(events.put_nowait, actor=f"{socket.gethostname()} pid {os.getpid()}", every=report_every)
        report.model_loaded(time.perf_counter() - started, f"{kwargs['device']} on {socket.gethostname()}")
        self.on_windows = report.windows  # sends only while a window of rows takes longer than report_every


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
            progress.add(*block_counts(block), len(done))
    if not progress.interactive:
        log.info(progress.line())


def _read_file_shards(file, shards, id_column, text_column, duplicates, id_type):
    from embednv.embed.read import read_shards

    yield from read_shards(file, shards, id_column, text_column, duplicates, id_type)


class NotesDatasource(Datasource):
    """One read task per Parquet shard (row-group ranges) or per CSV/JSONL file (streamed once)."""

    def __init__(self, plan: InputPlan, pending: list[Shard], id_column: str, text_column: str, id_type: str):
        self.plan, self.pending, self.id_column, self.text_column = plan, pending, id_column, text_column
        self.id_type = id_type

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
            read = functools.partial(
                _read_file_shards, file, group, self.id_column, self.text_column, repeated, self.id_type
            )
            meta = BlockMetadata(
                num_rows=sum(s.n_rows for s in group), size_bytes=None, exec_stats=None, input_files=(file.uri,)
            )
            tasks.append(ReadTask(read, meta))
        return tasks
