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

import pyarrow.compute as pc
import ray
import ray.data
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from embednv.columns import ERROR, N_TOKENS
from embednv.embed.assemble import ShardAssembler
from embednv.embed.config import EmbedConfig
from embednv.embed.inputs import InputPlan, Shard
from embednv.embed.progress import Progress
from embednv.embed.worker import EmbedWorker
from embednv.errors import ClusterUnreachable
from embednv.models.base import ModelRef

log = logging.getLogger(__name__)


CONNECT_TIMEOUT_S = 30.0
# A private instance has no dashboard and nothing scrapes it, so it keeps nothing that only grows
# with time (measured in docs/reliability.md, "Memory over time"); a cluster keeps its own
# settings (cluster/README.md). The GCS keeps 100 task events, not 100,000 (~1.5-3 KB each);
# Ray's metrics, which nobody reads here, are off.
PRIVATE_SYSTEM_CONFIG = {"task_events_max_num_task_in_gcs": 100, "enable_metrics_collection": False}
# Ray preloads jemalloc into the raylet and GCS. Its per-thread caches fill slowly over the
# first minutes to hours, so their RSS rose with elapsed time while the live heap stayed at 5 MB
# (jemalloc's own profile): no thread caches, and freed pages go back to the OS within a second.
DAEMON_MALLOC_CONF = "tcache:false,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


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
            with daemon_malloc_conf():
                ray.init(address="local", include_dashboard=False, _system_config=PRIVATE_SYSTEM_CONFIG, **kwargs)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = debug
    context.print_on_execution_start = debug
    logging.getLogger("ray.data").setLevel(logging.INFO if debug else logging.WARNING)


@contextlib.contextmanager
def daemon_malloc_conf() -> Iterator[None]:
    """DAEMON_MALLOC_CONF for the daemons ray.init starts (a user's MALLOC_CONF wins); glibc workers ignore it."""
    added = "MALLOC_CONF" not in os.environ
    if added:
        os.environ["MALLOC_CONF"] = DAEMON_MALLOC_CONF
    try:
        yield
    finally:
        if added:
            os.environ.pop("MALLOC_CONF")


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
            raise ClusterUnreachable(
                "no running Ray cluster found for address 'auto' (start one, or unset RAY_ADDRESS)"
            ) from None
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

    source = NotesDatasource(plan, pending, config.id_column, config.text_column)
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
            tokens = pc.sum(pc.if_else(ok, block.column(N_TOKENS), 0)).as_py() or 0
            progress.add(len(block), int(tokens), len(done))
    if not progress.interactive:
        log.info(progress.line())


def _read_file_shards(file, shards, id_column, text_column, duplicates):
    from embednv.embed.read import read_shards

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
            meta = BlockMetadata(
                num_rows=sum(s.n_rows for s in group), size_bytes=None, exec_stats=None, input_files=(file.uri,)
            )
            tasks.append(ReadTask(read, meta))
        return tasks
