"""Time and peak memory of each `embednv map` phase (PCA, k-means, t-SNE) on synthetic shards.

    python bench/bench_map.py --sizes 10000,100000 --dim 384 [--backend cpu] [--json out.json]
        [--multiscale auto|on|off] [--phases pca,kmeans,tsne] [--workdir DIR]

Each size runs in its own subprocess, so one size's memory never counts toward the next. In
the child, a thread samples the process RSS (psutil) every 20 ms; each phase reports its
wall time, its CPU time (all threads), the RSS when it started and the highest RSS seen
while it ran. The data are a
planted mixture of unit vectors (30 clusters around a shared direction, like sentence
embeddings), written as `part-*.parquet` shards in the pipeline's format before timing starts
(and reused from `--workdir` on a rerun with the same size, width and seed).
Prints one JSON document on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROWS_PER_SHARD = 50_000
CHUNK_ROWS = 10_000  # generated and written this many rows at a time: the generator stays small


def write_synthetic(emb_dir: Path, n: int, dim: int, seed: int, k: int = 30) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    centres = rng.standard_normal((k, dim))
    emb_dir.mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, n, ROWS_PER_SHARD)):
        rows = min(ROWS_PER_SHARD, n - start)
        with pq.ParquetWriter(emb_dir / f"part-{shard:05d}.parquet", _schema(dim)) as writer:
            for offset in range(0, rows, CHUNK_ROWS):
                m = min(CHUNK_ROWS, rows - offset)
                labels = rng.integers(0, k, m)
                x = (
                    3 * common / np.linalg.norm(common)
                    + 5 * centres[labels] / np.sqrt(dim)
                    + 2 * rng.standard_normal((m, dim)) / np.sqrt(dim)
                )
                x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
                ids = np.arange(start + offset, start + offset + m, dtype=np.int64)
                writer.write_table(
                    pa.table(
                        {
                            "note_id": ids,
                            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
                            "n_tokens": np.full(m, 256, np.int32),
                            "n_chunks": np.ones(m, np.int32),
                        },
                        schema=_schema(dim),
                    )
                )
    (emb_dir / "_manifest.json").write_text(json.dumps({"id_column": "note_id", "dim": dim}))


def _schema(dim: int):
    import pyarrow as pa

    return pa.schema(
        [
            ("note_id", pa.int64()),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("n_tokens", pa.int32()),
            ("n_chunks", pa.int32()),
        ]
    )


class RssSampler:
    """Highest resident set size of this process since the last `reset()`, sampled every 20 ms."""

    def __init__(self, interval_s: float = 0.02, max_rss_bytes: int | None = None) -> None:
        import psutil

        self._proc, self._interval, self._peak = psutil.Process(), interval_s, 0
        self._max = max_rss_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            if self._max and self._peak > self._max:  # protect a shared machine from the OOM killer
                print(f"aborting: RSS {self._peak / 2**30:.1f} GiB > --max-rss-gb", file=sys.stderr, flush=True)
                os._exit(3)
            self._stop.wait(self._interval)

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def reset(self) -> None:
        self._peak = self.rss()

    def peak(self) -> int:
        return max(self._peak, self.rss())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child(
    n: int,
    dim: int,
    backend_name: str,
    seed: int,
    workdir: Path,
    multiscale: str,
    phases_wanted: set[str],
    max_rss_gb: float,
) -> dict:
    import numpy as np  # noqa: F401  (imported before the first phase so it is not timed in it)

    from embednv.mapping.backends import get_backend
    from embednv.mapping.clusters import auto_clusters, fit_clusters
    from embednv.mapping.pca import auto_batch_size, reduce
    from embednv.mapping.tsne import embed
    from embednv.mapping.tsne_params import TSNEParams
    from embednv.shards import open_shards

    emb_dir = workdir / f"emb-{n}-{dim}-{seed}"
    start = time.perf_counter()
    if not (emb_dir / "_manifest.json").exists():  # written last: present means complete, reuse it
        write_synthetic(emb_dir, n, dim, seed)
    generate_s = time.perf_counter() - start
    sampler, phases = RssSampler(max_rss_bytes=int(max_rss_gb * 2**30) if max_rss_gb else None), {}

    @contextmanager
    def phase(name: str):
        sampler.reset()
        rss0, t0, cpu0 = sampler.rss(), time.perf_counter(), time.process_time()
        yield
        phases[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            # CPU seconds of all threads: unlike wall time, barely moved by other load on the machine
            "cpu_s": round(time.process_time() - cpu0, 2),
            "start_rss_mb": round(rss0 / 2**20),
            "peak_rss_mb": round(sampler.peak() / 2**20),
        }
        print(f"{n} {name}: {phases[name]}", file=sys.stderr, flush=True)

    backend = get_backend(backend_name)
    shards = open_shards(emb_dir)
    with phase("pca"):
        reduced = reduce(shards, 50, auto_batch_size(dim), backend)
    params = TSNEParams(multiscale={"auto": "auto", "on": True, "off": False}[multiscale]).resolve(n)
    if "kmeans" in phases_wanted:
        with phase("kmeans"):
            fit_clusters(reduced.x, "auto", backend, seed)
    if "tsne" in phases_wanted:
        with phase("tsne"):
            embed(reduced.x, params, backend, seed)
    sampler.stop()
    return {
        "n": n,
        "dim": dim,
        "backend": backend.name,
        "k": auto_clusters(n),
        "tsne_perplexities": list(params.perplexities),
        "n_jobs": params.n_jobs,
        "generate_s": round(generate_s, 1),
        "phases": phases,
        "total_s": round(sum(p["seconds"] for p in phases.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000", help="comma-separated numbers of points")
    parser.add_argument("--dim", type=int, default=384, help="embedding width (384 MiniLM, 4096 NV-Embed-v2)")
    parser.add_argument("--backend", default="cpu", choices=["auto", "cuml", "cpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--phases", default="pca,kmeans,tsne", help="which phases to time (PCA always runs: the others need its output)"
    )
    parser.add_argument(
        "--multiscale", default="auto", choices=["auto", "on", "off"], help="t-SNE second scale n/100 (auto: n <= 100k)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where shards are written (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=0.6 * _total_memory_gb(),
        help="abort a size whose RSS exceeds this (default: 60%% of RAM)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:  # one size, in its own process
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
        print(
            json.dumps(
                child(
                    args.child,
                    args.dim,
                    args.backend,
                    args.seed,
                    args.workdir,
                    args.multiscale,
                    set(args.phases.split(",")),
                    args.max_rss_gb,
                )
            )
        )
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        workdir = args.workdir or Path(tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--dim",
                str(args.dim),
                "--backend",
                args.backend,
                "--seed",
                str(args.seed),
                "--workdir",
                str(workdir),
                "--multiscale",
                args.multiscale,
                "--phases",
                args.phases,
                "--max-rss-gb",
                str(args.max_rss_gb),
            ]
            start = time.perf_counter()
            proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:  # report it and go on with the other sizes
                results.append(
                    {
                        "n": n,
                        "dim": args.dim,
                        "error": f"exit code {proc.returncode} after {time.perf_counter() - start:.0f} s (see stderr)",
                    }
                )
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {"machine": _machine(), "results": results}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    if any("error" in r for r in results):
        sys.exit(1)


def _total_memory_gb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def _machine() -> dict:
    import os
    import platform

    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m": round(os.getloadavg()[0], 1),  # other work on the machine inflates wall times
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    main()
