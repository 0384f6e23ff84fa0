"""The GPU acceptance script's map section (`bench/nvembed_device.py`): the shipped map on 100k 4096-d points.

`run_map` end to end with the backend it finds (cuML with a GPU, else scikit-learn and openTSNE
on the CPU), placement local, one t-SNE scale (the CPU's second scale grows ~n^2: docs/map.md).
Its figures (map.png, map.html) are copied to `--figures`. The device image has CuPy but no cuML,
so the shipped streaming PCA also runs there on cupy arrays (its backend contract is only
`to_device`/`to_host`), timed beside the CPU PCA and compared with it. scikit-learn's k-means has
no GPU twin without cuML, so k-means stays on the CPU there, and the JSON says so.

A phase that cannot run (a library missing) does not stop the others: the section is then
`partial`, naming the phase and why, never `ok`.
"""

from __future__ import annotations

import importlib
import shutil
import time
from pathlib import Path

import numpy as np

FIGURES = ("map.png", "map.html")
LIBRARIES = {"sklearn": "k-means (CPU)", "openTSNE": "t-SNE (CPU)", "matplotlib": "map.png"}


def map_section(work: Path, args) -> dict:
    from bench.bench_map import write_synthetic
    from embednv.mapping.backends import cuml_status
    from embednv.mapping.tsne_params import TSNEParams

    n, dim = (300, 64) if args.dry_run else (args.map_points, 4096)
    # The dry run only proves the path: fewer iterations, as the map tests use.
    tsne = TSNEParams(multiscale=False, **({"n_iter": 150} if args.dry_run else {}))
    emb = work / "map-embeddings"
    started = time.perf_counter()
    write_synthetic(emb, n, dim, args.seed)
    result: dict = {"points": n, "dim": dim, "seconds_write_vectors": round(time.perf_counter() - started, 1)}
    has_cuml, why = cuml_status()
    result["cuml"] = why
    missing = {name: reason for name in LIBRARIES if (reason := _unimportable(name))}
    if has_cuml:
        missing.pop("sklearn", None), missing.pop("openTSNE", None)  # cuML does k-means and t-SNE
    result["missing"] = missing
    if not has_cuml and not args.dry_run:
        result["pca_gpu_cupy"] = pca_on_cupy(emb, dim)
    if not missing:
        result.update(shipped_map(emb, work / "map", tsne, args))
        result["note"] = "cuML (GPU)" if result["backend"] == "cuml" else f"CPU path: {why}"
        return result
    result.update(phase_by_phase(emb, dim, tsne, args.seed))
    not_run = [name for name, t in result["timings_s"].items() if isinstance(t, str)]
    result.update(status="partial", why=f"not run: {', '.join(not_run) or 'render'}; "
                                        f"missing {', '.join(f'{k} ({v})' for k, v in missing.items())}")  # fmt: skip
    return result


def shipped_map(emb: Path, out: Path, tsne, args) -> dict:
    """`embednv map` as users run it, in this process; the figures copied out."""
    from embednv.mapping.run import MapConfig, run_map

    done = run_map(MapConfig(emb_dir=emb, out_dir=out, tsne=tsne, seed=args.seed, placement="local"))
    figures = []
    if args.figures is not None:
        args.figures.mkdir(parents=True, exist_ok=True)
        for name in FIGURES:
            if (out / name).is_file():
                shutil.copyfile(out / name, args.figures / name)
                figures.append(name)
    return {"backend": done.backend, "k": done.k, "timings_s": {k: round(v, 1) for k, v in done.timings.items()},
            "knn_preservation_10": done.metrics.get("knn_preservation_10"), "silhouette": done.metrics.get("silhouette"),
            "figures": figures}  # fmt: skip


def phase_by_phase(emb: Path, dim: int, tsne, seed: int) -> dict:
    """The heavy phases one at a time with the backend present, each timed or said why it did not run."""
    from embednv.mapping.backends import get_backend
    from embednv.mapping.clusters import fit_clusters
    from embednv.mapping.pca import auto_batch_size, reduce
    from embednv.mapping.tsne import embed
    from embednv.shards import open_shards

    backend = get_backend("auto")
    timings: dict = {}
    out: dict = {"backend": backend.name, "timings_s": timings}
    x = None
    for name in ("pca", "kmeans", "tsne"):
        started = time.perf_counter()
        try:
            if x is None and name != "pca":
                raise RuntimeError("no PCA output")
            if name == "pca":
                x = reduce(open_shards(emb), 50, auto_batch_size(dim), backend).x
            elif name == "kmeans":
                out["k"] = fit_clusters(x, "auto", backend, seed).k
            else:
                embed(x, tsne, backend, seed)
            timings[name] = round(time.perf_counter() - started, 1)
        except Exception as error:  # noqa: BLE001 - a missing library: say which phase and why
            timings[name] = f"not run: {type(error).__name__}: {str(error)[:200]}"
    return out


class CupyArrays:
    """The streaming PCA's array contract on the GPU through CuPy (cuML's backend does the same for it)."""

    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.cp = cupy

    def to_device(self, a: np.ndarray):
        return self.cp.asarray(a)

    def to_host(self, a) -> np.ndarray:
        return self.cp.asnumpy(a)


def pca_on_cupy(emb: Path, dim: int) -> dict:
    """The shipped `reduce` (both streaming passes) on cupy arrays, timed against the same on numpy."""
    from embednv.mapping.backends import CpuBackend
    from embednv.mapping.pca import auto_batch_size, reduce
    from embednv.shards import open_shards

    try:
        arrays = CupyArrays()
        arrays.cp.cuda.runtime.getDeviceCount()
    except Exception as error:  # noqa: BLE001 - no CuPy, or no usable device: say so
        return {"status": "not run", "why": f"{type(error).__name__}: {str(error)[:200]}"}
    result = {}
    reduced = {}
    for name, backend in (("gpu_cupy", arrays), ("cpu_numpy", CpuBackend())):
        started = time.perf_counter()
        reduced[name] = reduce(open_shards(emb), 50, auto_batch_size(dim), backend)
        result[f"seconds_{name}"] = round(time.perf_counter() - started, 1)
    a, b = reduced["gpu_cupy"].x, reduced["cpu_numpy"].x
    scale = float(np.abs(b).max()) or 1.0
    result["max_abs_diff_over_max"] = float(np.abs(a - b).max() / scale)
    result["k_means"] = "CPU (scikit-learn): embednv has no GPU k-means without cuML"
    return result


def _unimportable(name: str) -> str | None:
    """Why `name` cannot be imported here, or None when it can."""
    try:
        importlib.import_module(name)
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None
