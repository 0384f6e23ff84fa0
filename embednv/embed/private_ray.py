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
