"""How the private local Ray of a run without `--address` is configured (Ray itself not imported).

`ray_job.init_ray` starts it with these settings; a joined cluster keeps its own
(cluster/README.md). A private instance is one person's run on one machine: it has no
dashboard, nothing reads its metrics, and it should not be reachable from the network (it
listens on 127.0.0.1 only: `ray_job.loopback_only`). It keeps nothing that only grows with
time (measured in docs/reliability.md, "Memory over time").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# The GCS keeps 100 task events, not 100,000 (~1.5-3 KB each); Ray's metrics, which nobody
# reads here, are off.
PRIVATE_SYSTEM_CONFIG = {"task_events_max_num_task_in_gcs": 100, "enable_metrics_collection": False}
# Ray preloads jemalloc into the raylet and GCS. Its per-thread caches fill slowly over the
# first minutes to hours, so their RSS rose with elapsed time while the live heap stayed at 5 MB
# (jemalloc's own profile): no thread caches, and freed pages go back to the OS within a second.
DAEMON_MALLOC_CONF = "tcache:false,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


# Ray's C++ core prints one error-level line on stderr for every Ray Data actor, in every healthy
# run: "Actor ... has constructor arguments in the object store and max_restarts > 0" (Ray Data
# hands each actor a handle of its own, ray-project/ray#57733). Its C++ components log fatal
# errors only, unless --debug; what goes wrong still reaches the driver as a Python exception.
QUIET_CORE_LOG_LEVEL = "fatal"


def daemon_malloc_conf() -> contextlib.AbstractContextManager[None]:
    """DAEMON_MALLOC_CONF for the daemons ray.init starts; glibc workers ignore it."""
    return environment_default("MALLOC_CONF", DAEMON_MALLOC_CONF)


def quiet_core_log(debug: bool) -> contextlib.AbstractContextManager[None]:
    """Ray's C++ logging at QUIET_CORE_LOG_LEVEL for what ray.init starts, this process's core included."""
    return contextlib.nullcontext() if debug else environment_default("RAY_BACKEND_LOG_LEVEL", QUIET_CORE_LOG_LEVEL)


@contextlib.contextmanager
def environment_default(name: str, value: str) -> Iterator[None]:
    """`name=value` while the block runs (a value the user set wins), as the processes started in it read it."""
    added = name not in os.environ
    if added:
        os.environ[name] = value
    try:
        yield
    finally:
        if added:
            os.environ.pop(name)
