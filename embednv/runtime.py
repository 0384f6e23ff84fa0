"""Facts about the machine and the software a run used: CPUs it may use, library versions."""

from __future__ import annotations

import os
import platform

# Recorded in every manifest (embed and map), and in benchmark results.
VERSIONED_PACKAGES = (
    "embednv",
    "torch",
    "transformers",
    "tokenizers",
    "ray",
    "pyarrow",
    "numpy",
    "scikit-learn",
    "openTSNE",
    "matplotlib",
    "datashader",
    "cuml",
    "cupy",
    # cuML and CuPy wheels are named by CUDA version, not by their import names
    "cuml-cu13",
    "cuml-cu12",
    "cupy-cuda13x",
    "cupy-cuda12x",
)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (as containers, job schedulers and Ray set it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def library_versions(packages: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Python's version and each installed package's; packages not installed are left out."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def reset_peak_rss() -> bool:
    """Start a new high-water mark of this process's resident memory (Linux: /proc/self/clear_refs).

    With it each phase of a run reports its own peak, not the largest of the phases before it.
    False where the kernel does not allow it; `peak_rss_mb` then reports the process's peak so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> int | None:
    """The process's resident-memory high-water mark in MiB (VmHWM) since `reset_peak_rss`; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def import_faiss():
    """FAISS, or one line saying how to get it (it is a dependency of embednv: faiss-cpu); for the
    cohort index and the map's neighbour searches alike."""
    try:
        import faiss
    except ImportError as error:
        from embednv.errors import IndexingError

        raise IndexingError(f"FAISS is not installed here ({error}): pip install faiss-cpu") from None
    return faiss
