"""Where the map's heavy phases run: in this process, or as one Ray task on a GPU worker.

    local       PCA, k-means and t-SNE in this process, with the backend `--backend` picks here.
    gpu-worker  the same phases (`compute.compute`) as one Ray task asking for one GPU, on a
                worker whose environment has cuML (the task fails in one line, releasing the
                GPU, on a worker without it); it streams the shards itself, so vectors never
                pass through this driver, which only plans, reads the notes and writes.
    auto        gpu-worker when a Ray cluster is named (RAY_ADDRESS, as `ray job submit` sets
                it) and has a GPU, or an autoscaler that says it can start one; else local, with
                one log line saying why.

GPUs are counted in `GpuCapacity`: those in the cluster now, and those its autoscaler can add.
An autoscaling GPU group at zero has no GPU now: counting only `cluster_resources()` would map
it on the head's CPU while a GPU node was one request away.

Ray is imported only when a cluster has to be asked (`ray_stage`), so a local map never loads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embednv.errors import ConfigError, MapError

if TYPE_CHECKING:
    from embednv.mapping.compute import Heavy, HeavyRequest
    from embednv.shards import ShardSet

log = logging.getLogger(__name__)

PLACEMENTS = ("auto", "local", "gpu-worker")


@dataclass(frozen=True)
class Decision:
    placement: str  # "local" or "gpu-worker"
    reason: str  # the one log line's "why"


@dataclass(frozen=True)
class GpuCapacity:
    """A cluster's GPUs: `now`, and `can_add` more that its autoscaler says it can start."""

    now: int
    can_add: int = 0
    source: str = "no autoscaler reports a GPU group it can start"  # where `can_add` was read


def decide(
    placement: str, address: str | None, capacity: Callable[[str], GpuCapacity], backend: str = "auto"
) -> Decision:
    """Pick local or gpu-worker; `capacity(address)` is called only when a cluster must be asked."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"Invalid --placement {placement!r}. Valid: {', '.join(PLACEMENTS)}")
    if placement == "local":
        return Decision("local", "requested")
    if not address:
        if placement == "gpu-worker":
            raise MapError(
                "--placement gpu-worker needs a Ray cluster: submit with `ray job submit`, "
                "or set RAY_ADDRESS; use --placement local to map in this process"
            )
        return Decision("local", "no Ray cluster: RAY_ADDRESS is not set")
    if backend == "cpu":  # a GPU task runs cuML or nothing: never CPU code holding a GPU
        if placement == "gpu-worker":
            raise ConfigError("--placement gpu-worker runs cuML on a GPU worker; --backend cpu needs --placement local")
        return Decision("local", "--backend cpu: the CPU path runs in this driver")
    gpus = capacity(address)
    if gpus.now >= 1:
        return Decision("gpu-worker", f"the Ray cluster at {address} has {gpus.now:g} GPU(s)")
    if gpus.can_add:
        return Decision(
            "gpu-worker",
            f"the Ray cluster at {address} has no GPU now; its autoscaler can start {gpus.can_add:g} "
            f"({gpus.source}): the map task waits for one",
        )
    if placement == "gpu-worker":
        raise MapError(
            f"--placement gpu-worker: the Ray cluster at {address} has no GPU ({gpus.source}); "
            "start a GPU worker first, or use --placement auto to map on CPU in the driver"
        )
    return Decision(
        "local", f"the Ray cluster at {address} has no GPU ({gpus.source}), so the CPU path runs in this driver"
    )


class Stage:
    """The heavy phases, placed: `run(request, shards)` returns the `compute.Heavy` result."""

    def __init__(self, placement: str, backend_name: str) -> None:
        """Decide now, and resolve a local backend now, so that nothing is written before either fails."""
        from embednv.mapping.backends import get_backend

        self.address = os.environ.get("RAY_ADDRESS") or None
        self.decision = decide(placement, self.address, _cluster_capacity, backend_name)
        log.info("placement: %s (%s)", self.decision.placement, self.decision.reason)
        self.backend = get_backend(backend_name) if self.decision.placement == "local" else None

    def run(self, request: HeavyRequest, shards: ShardSet) -> Heavy:
        from embednv.mapping.compute import compute, here

        if self.backend is not None:
            return compute(request, self.backend, here("local", reason=self.decision.reason), shards)
        from embednv.mapping.ray_stage import run_on_gpu_worker

        heavy = run_on_gpu_worker(request, self.address)
        heavy.where["reason"] = self.decision.reason
        return heavy


def _cluster_capacity(address: str) -> GpuCapacity:
    from embednv.mapping.ray_stage import cluster_capacity

    now, can_add, source = cluster_capacity(address)
    return GpuCapacity(now, can_add, source or GpuCapacity.source)
