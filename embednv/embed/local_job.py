"""The local executor: the stages `ray_job` runs, one after another in this process, without Ray.

One machine with one device (a laptop, a single GPU, CI) gains nothing from Ray: one model, one
device, and Ray's start, actor and object store in between (8.8 s of a 30 s, 400-note MiniLM run
on 2 cores: docs/benchmarks.md, Throughput (e)). Here every pending shard
is read, tokenized in windows of `window_rows`, embedded and handed to the `ShardAssembler`
with the very functions the Ray actors and read tasks call, so both executors write the same
shards, errors and manifest. The policy around it (planning, resume, summary) is `run.py`.

Its stages run one after another, so each one's seconds can be counted apart (`STAGES`): the
run's summary and manifest carry them, and a benchmark reads the model's share from there
instead of re-running the loop itself (`bench/nvembed_device.py`). Under Ray the stages overlap
on different processes, so it reports none.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import defaultdict

from embednv.embed.assemble import ShardAssembler
from embednv.embed.config import EmbedConfig
from embednv.embed.inputs import InputPlan, Shard
from embednv.embed.progress import ActorReport, Progress, block_counts
from embednv.embed.read import read_shards
from embednv.embed.tokenize import tokenize_table
from embednv.embed.worker import EmbedWorker
from embednv.models.base import ModelRef

log = logging.getLogger(__name__)

# Seconds spent in each stage: loading the model, reading and checking rows, tokenizing, the model
# stage (batching, the forward passes, pooling; its result is on the host when it returns) and
# handing rows to the assembler (which writes each shard once it is complete).
STAGES = ("load", "read", "tokenize", "embed", "write")


def visible_gpus() -> int:
    """CUDA devices this process sees; the local executor uses one."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def embed_shards(
    config: EmbedConfig,
    ref: ModelRef,
    plan: InputPlan,
    pending: list[Shard],
    device: str,
    dtype: str,
    batch_tokens: int,
    assembler: ShardAssembler,
) -> dict[str, float]:
    """Embed the rows of `pending` in file order, writing each shard as soon as its rows are back.

    Returns the seconds spent in each of `STAGES`."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    progress = Progress(
        sum(s.n_rows for s in pending),
        len(plan.shards),
        len(plan.shards) - len(pending),
        config.log_every,
        poll_events=lambda: _drain(events),
    )
    seconds = dict.fromkeys(STAGES, 0.0)
    clock = _Clock(seconds)
    with progress:
        worker = clock("load", EmbedWorker, ref, device, dtype, batch_tokens, config.cpu_threads)
        report = ActorReport(events.put, actor="this process", every=min(1.0, config.log_every))
        report.model_loaded(seconds["load"], f"{device} in this process")
        worker.on_windows = report.windows  # a long note shows its windows done, as an actor's does
        for file_index, shards in _pending_by_file(pending).items():
            file = plan.files[file_index]
            duplicates = plan.duplicates.get(file_index, frozenset())
            tables = read_shards(file, shards, config.id_column, config.text_column, duplicates, config.id_type)
            while (table := clock("read", next, tables, None)) is not None:
                for start in range(0, len(table), config.window_rows):
                    rows = table.slice(start, config.window_rows)
                    window = clock("tokenize", tokenize_table, rows, ref, config.instruction)
                    block = clock("embed", worker, window)
                    written = clock("write", assembler.add, block)
                    progress.add(*block_counts(block), len(written))
    if not progress.interactive:
        log.info(progress.line())
    return seconds


class _Clock:
    """`clock(stage, f, *args)` calls f(*args) and adds its wall seconds to `seconds[stage]`."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds

    def __call__(self, stage: str, f, *args):
        started = time.perf_counter()
        try:
            return f(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - started


def _pending_by_file(pending: list[Shard]) -> dict[int, list[Shard]]:
    by_file: dict[int, list[Shard]] = defaultdict(list)
    for shard in sorted(pending, key=lambda s: (s.file, s.start)):
        by_file[shard.file].append(shard)
    return dict(by_file)


def _drain(events: queue.SimpleQueue) -> list:
    drained = []
    while not events.empty():
        drained.append(events.get_nowait())
    return drained
