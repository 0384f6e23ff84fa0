"""Where the map's heavy phases run: in this process, or as one Ray task on a GPU worker.

    local       PCA, k-means and t-SNE in this process, with the backend `--backend` picks here.
    gpu-worker  the same phases (`compute.compute`) as one Ray task asking for one GPU, on a
                worker whose environment has cuML; it streams the shards itself, so vectors
                never pass through this driver, which only plans, reads the notes and writes.
    auto        gpu-worker when a Ray cluster is named (RAY_ADDRESS, as `ray job submit` sets
                it) and has GPU resources; else local, with one log line saying why.

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
    from embednv.mapping.reader import ShardSet

log = logging.getLogger(__name__)

PLACEMENTS = ("auto", "local", "gpu-worker")


@dataclass(frozen=True)
class Decision:
    placement: str  # "local" or "gpu-worker"
    reason: str  # the one log line's "why"


def decide(placement: str, address: str | None, cluster_gpus: Callable[[str], int]) -> Decision:
    """Pick local or gpu-worker; `cluster_gpus(address)` is called only when a cluster must be asked."""
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
    gpus = cluster_gpus(address)
    if gpus >= 1:
        return Decision("gpu-worker", f"the Ray cluster at {address} has {gpus:g} GPU(s)")
    if placement == "gpu-worker":
        raise MapError(
            f"--placement gpu-worker: the Ray cluster at {address} has no GPU; "
            "start a GPU worker first, or use --placement auto to map on CPU in the driver"
        )
    return Decision("local", f"the Ray cluster at {address} has no GPU, so the CPU path runs in this driver")


class Stage:
    """The heavy phases, placed: `run(request, shards)` returns the `compute.Heavy` result."""

    def __init__(self, placement: str, backend_name: str) -> None:
        """Decide now, and resolve a local backend now, so that nothing is written before either fails."""
        from embednv.mapping.backends import get_backend

        self.address = os.environ.get("RAY_ADDRESS") or None
        self.decision = decide(placement, self.address, _cluster_gpus)
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


def _cluster_gpus(address: str) -> int:
    from embednv.mapping.ray_stage import cluster_gpus

    return cluster_gpus(address)
