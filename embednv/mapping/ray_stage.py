"""The map's heavy phases as one Ray task on a GPU worker (with `embed/ray_job.py`, the modules that import Ray).

The task asks for one GPU, so Ray schedules it on a GPU node (and, on an autoscaling cluster,
that node's group), and calls `compute.compute`, the very function a local map runs. It opens
the shards itself from the embedding directory's path or URI, so vectors go from storage to
the GPU worker and never through the driver; what comes back is small (ids, 2-D coordinates,
labels, centroids, exemplar rows, scores). Its log lines (phase timings, backend, PCA, k-means
and t-SNE summaries, never note text) travel back with the result and are logged by the driver,
so `ray job logs` shows where each phase ran and for how long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import ray

from embednv.errors import EmbednvError

if TYPE_CHECKING:
    from embednv.mapping.compute import Heavy, HeavyRequest

log = logging.getLogger(__name__)

WAIT_LOG_S = 300.0  # a still-running line this often, so a long t-SNE is not silence in the job log
# One retry: a lost node (spot reclaim) is worth one rerun; an out-of-memory kill is not worth more.
MAX_RETRIES = 1


def cluster_gpus(address: str) -> int:
    """Join the cluster at `address` (once) and count its GPUs now."""
    from embednv.console import QUIET_RAY_LOGGERS
    from embednv.embed.ray_job import connect

    debug = logging.getLogger("embednv").isEnabledFor(logging.DEBUG)
    if not debug:  # shown with --debug only
        for name in QUIET_RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    return connect(debug, address)  # joins as `embed` does (the same checks and settings); once


def run_on_gpu_worker(request: HeavyRequest, address: str) -> Heavy:
    """Run the heavy phases as a one-GPU Ray task and return its `compute.Heavy`, re-logging its lines here."""
    cluster_gpus(address)  # joined already when placement asked; a no-op then
    task = ray.remote(num_gpus=1, num_cpus=1, max_retries=MAX_RETRIES)(_heavy_on_worker)
    ref = task.remote(request)
    log.info("map task submitted: PCA, k-means and t-SNE on a worker with 1 GPU, reading %s itself", request.emb_dir)
    waited = 0.0
    try:
        while not ray.wait([ref], timeout=WAIT_LOG_S)[0]:
            waited += WAIT_LOG_S
            log.info("map task: not done after %.0f s (waiting for a GPU, or running)", waited)
        heavy, lines = ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        ours = from_worker(error.cause, request.emb_dir)
        if ours is None:
            raise
        raise ours from None
    except KeyboardInterrupt:
        ray.cancel(ref, force=True)
        raise
    for line in lines:
        log.info("[%s] %s", heavy.where["host"], line)
    return heavy


def from_worker(cause: BaseException | None, emb_dir: str) -> EmbednvError | None:
    """The worker's own one-line error, said as from there; None when it is not one of ours (Ray's stays)."""
    if not isinstance(cause, EmbednvError):
        return None
    hint = ""
    if "not found" in str(cause) and "://" not in emb_dir:
        hint = " (a local path must be on storage every node mounts at the same path; or use an s3:// or gs:// URI)"
    return type(cause)(f"on the GPU worker: {cause}{hint}")


def _heavy_on_worker(request: HeavyRequest) -> tuple[Heavy, list[str]]:
    """Runs on the GPU worker: the same phases as a local map, with this node's backend; returns (Heavy, log lines)."""
    from threadpoolctl import threadpool_limits

    from embednv.mapping.backends import get_backend
    from embednv.mapping.compute import compute, here
    from embednv.runtime import library_versions, usable_cpus

    context = ray.get_runtime_context()
    where = here(
        "gpu-worker",
        node_id=context.get_node_id(),
        gpu_ids=[str(g) for g in ray.get_gpu_ids()],
        resources=context.get_assigned_resources(),
        versions=library_versions(),
    )
    with _captured_logs() as lines, threadpool_limits(limits=usable_cpus()):
        # Ray sets OMP_NUM_THREADS=1 for a one-CPU task; the host-side parts (eigensolver, metrics,
        # the CPU backend when cuML is missing) may use the node's cores: the task has it to itself.
        heavy = compute(request, get_backend(request.backend), where)
    return heavy, lines


@contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Collect embednv's INFO lines in this process (a Ray worker prints nowhere the job log shows)."""
    lines: list[str] = []
    logger, handler = logging.getLogger("embednv"), _ListHandler(lines)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
