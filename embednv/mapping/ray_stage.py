"""The map's heavy phases as one Ray task on a GPU worker (with `embed/ray_job.py`, the modules that import Ray).

The task asks for one GPU, so Ray schedules it on a GPU node (and, on an autoscaling cluster,
that node's group), and calls `compute.compute`, the very function a local map runs. On a
worker without cuML it fails at once in one line, and so gives its GPU back, rather than run
the CPU code while holding it. It opens the shards itself from the embedding directory's path
or URI, so vectors go from storage to the GPU worker and never through the driver; what comes
back is small (ids, 2-D coordinates, labels, centroids, exemplar rows, scores).

The task is a streaming generator: each of its log lines (phase timings, backend, PCA, k-means
and t-SNE summaries, never note text) is yielded as it is logged, and the driver logs it at
once, so `ray job logs` shows each phase when it ends, not all of them when the task does; the
result comes last. The driver's own lines say whether the task is still waiting for a GPU (no
line from it yet) or running.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from embednv.errors import BackendUnavailable, EmbednvError

if TYPE_CHECKING:
    from embednv.mapping.compute import Heavy, HeavyRequest

log = logging.getLogger(__name__)

WAIT_LOG_S = 300.0  # a still-running line this often, so a long t-SNE is not silence in the job log
# One retry: a lost node (spot reclaim) is worth one rerun; an out-of-memory kill is not worth more.
MAX_RETRIES = 1


def join(address: str) -> None:
    """Join the cluster at `address`, once per process, as `embed` does (ray_job.connect: the same checks and settings)."""
    from embednv.console import QUIET_RAY_LOGGERS
    from embednv.embed.ray_job import connect

    debug = logging.getLogger("embednv").isEnabledFor(logging.DEBUG)
    if not debug:  # shown with --debug only
        for name in QUIET_RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    connect(debug, address)


def cluster_capacity(address: str) -> tuple[int, int, str]:
    """Join the cluster at `address` and count its GPUs: (now, what its autoscaler can add, where that was read)."""
    join(address)
    now = int(ray.cluster_resources().get("GPU", 0))
    if now:
        return now, 0, ""
    return (now, *autoscaler_gpus())


def autoscaler_gpus(bootstrap: Path = Path.home() / "ray_bootstrap_config.yaml") -> tuple[int, str]:
    """GPUs an autoscaler can start, and where that was read; (0, "") when none says.

    Ray's cluster config in the GCS (node groups, their resources and maximum counts; what Ray Data
    reads too) where an autoscaler reports it; else the cluster launcher's config, which `ray up`
    leaves on the head, where a job's driver runs. KubeRay's autoscaler reports neither, so a
    KubeRay GPU group at zero pods is not counted (the shipped manifests keep one pod: minReplicas 1).
    """
    groups = _reported_node_groups()
    if groups:
        return sum(gpus * (1 if count < 0 else count) for gpus, count in groups), "the node groups it reports to Ray"
    if bootstrap.is_file():
        import yaml  # a dependency of ray itself

        types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types") or {}
        gpus = sum(int(t.get("resources", {}).get("GPU", 0)) * int(t.get("max_workers", 0)) for t in types.values())
        return gpus, f"its cluster config {bootstrap}"
    return 0, ""


def _reported_node_groups() -> list[tuple[float, int]]:
    """(GPUs per node, max nodes; -1 = no limit) of each node group in Ray's cluster config, if reported."""
    try:
        from ray._private.state import state  # private, as for Ray Data's autoscaler: absent in other versions

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - not reported, or this Ray keeps it elsewhere: not known
        return []
    groups = config.node_group_configs if config is not None else []
    return [(g.resources.get("GPU", 0), g.max_count) for g in groups]


def run_on_gpu_worker(request: HeavyRequest, address: str) -> Heavy:
    """Run the heavy phases as a one-GPU Ray task and return its `compute.Heavy`, logging its lines as they come."""
    join(address)  # joined already when placement asked; a no-op then
    task = ray.remote(num_gpus=1, num_cpus=1, max_retries=MAX_RETRIES, num_returns="streaming")(_heavy_on_worker)
    stream = task.remote(request)
    log.info("map task submitted: PCA, k-means and t-SNE on a worker with 1 GPU, reading %s itself", request.emb_dir)
    waited, host, heavy = 0.0, None, None
    try:
        while heavy is None:
            if not ray.wait([stream], timeout=WAIT_LOG_S)[0]:
                waited += WAIT_LOG_S
                state = "waiting for a GPU" if host is None else "running"
                log.info("map task: %s after %.0f s", state, waited)
                continue
            kind, value = ray.get(next(stream))
            if kind == "started":
                host = value
            elif kind == "line":
                log.info("[%s] %s", host, value)
            else:
                heavy = value
    except ray.exceptions.RayTaskError as error:
        ours = from_worker(error.cause, request.emb_dir)
        if ours is None:
            raise
        raise ours from None
    except KeyboardInterrupt:
        ray.cancel(stream, force=True)
        raise
    return heavy


def from_worker(cause: BaseException | None, emb_dir: str) -> EmbednvError | None:
    """The worker's own one-line error, said as from there; None when it is not one of ours (Ray's stays)."""
    if not isinstance(cause, EmbednvError):
        return None
    hint = ""
    if "not found" in str(cause) and "://" not in emb_dir:
        hint = " (a local path must be on storage every node mounts at the same path; or use an s3:// or gs:// URI)"
    return type(cause)(f"on the GPU worker: {cause}{hint}")


def _heavy_on_worker(request: HeavyRequest) -> Iterator[tuple[str, object]]:
    """Runs on the GPU worker: the same phases as a local map, with cuML. Yields ("started", host), then
    ("line", text) for each log line as it is logged, then ("heavy", compute.Heavy)."""
    from threadpoolctl import threadpool_limits

    from embednv.mapping.backends import cuml_status, get_backend
    from embednv.mapping.compute import compute, here, process
    from embednv.runtime import library_versions, usable_cpus

    host = process()["host"]
    has_cuml, why = cuml_status()
    if not has_cuml:  # raised before any work: the task ends, and Ray gives its GPU back
        raise BackendUnavailable(
            f"{host} has no cuML ({why}): install the gpu extra in the GPU workers' environment "
            "(cluster/README.md), or use --placement local"
        )
    context = ray.get_runtime_context()
    where = here(
        "gpu-worker",
        node_id=context.get_node_id(),
        gpu_ids=[str(g) for g in ray.get_gpu_ids()],
        resources=context.get_assigned_resources(),
        versions=library_versions(),
    )
    yield "started", host
    lines: queue.SimpleQueue = queue.SimpleQueue()
    done: dict = {}

    def work() -> None:
        try:
            # Ray sets OMP_NUM_THREADS=1 for a one-CPU task; the host-side parts (eigensolver, metrics)
            # may use the node's cores: the task has it to itself.
            with threadpool_limits(limits=usable_cpus()):
                done["heavy"] = compute(request, get_backend(request.backend), where)
        except BaseException as error:  # noqa: BLE001 - re-raised in the task's own thread below
            done["error"] = error
        finally:
            lines.put(None)

    logger, handler = logging.getLogger("embednv"), _QueueHandler(lines)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        worker = threading.Thread(target=work, name="embednv-map", daemon=True)
        worker.start()
        while (line := lines.get()) is not None:
            yield "line", line
        worker.join()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if "error" in done:
        raise done["error"]
    yield "heavy", done["heavy"]


class _QueueHandler(logging.Handler):
    """embednv's INFO lines on a queue, for the task to yield (a Ray worker prints nowhere the job log shows)."""

    def __init__(self, lines: queue.SimpleQueue) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())
