"""The cohort index at 1M x 384-d: build time and memory, size beside the vectors, query latency, recall@50 vs exact.

    python bench/cohort_index.py [--n 1000000] [--dim 384] [--kinds ivf,ivf-fp16,ivf-sq8] [--queries 200]
        [--workdir DIR] [--json docs/benchmarks-index.json]

The corpus is `bench_map.write_synthetic` (30 planted clusters around a shared direction, the
map benches' generator), written as 50,000-row shards and reused from --workdir on a rerun.
Within a cluster it is isotropic noise, so the 50 nearest of a note are barely nearer than the
rest of its cluster: the hard end for an inverted-file index, which must probe many lists to
find them (real embeddings have finer structure inside a topic). Steps:

1. Queries: half are corpus notes (as `cohort --near` asks, the note itself left out), half
   new vectors from the same clusters (as `--query` text lands near, but not on, the notes).
   Their exact top 50 come from one streaming pass over the shards.
2. Per kind: `embednv index EMB --kind K --overwrite`, the real command in a subprocess (wall
   time and its peak RSS, sampled); then, in this process, `open_search` once and
   `IndexSearch.nearest` per query (what `cohort` runs after loading): latency median and p95
   (the page cache holds the index: it was just written) and recall@50 against the exact answer.
3. The command end to end, a new process each time: `embednv cohort EMB --near ID --k 50` three
   times per kind, and once with `--exact` (the scan it replaces).
Goal (issue 23): recall@50 >= 0.95 and median latency < 50 ms at 1M x 384-d on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_map import write_synthetic  # noqa: E402
from bench.common import emit, git_commit, log, machine_info, now, run_timed, subprocess_env  # noqa: E402

GOAL_RECALL, GOAL_MEDIAN_MS, K, CLUSTERS, SEED = 0.95, 50.0, 50, 30, 0


def fresh_vectors(m: int, dim: int, seed: int):
    """New vectors from write_synthetic's clusters (same seed, so the same centres), none of them in the corpus."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    common, centres = rng.standard_normal(dim), rng.standard_normal((CLUSTERS, dim))
    other = np.random.default_rng(seed)
    x = (
        3 * common / np.linalg.norm(common)
        + 5 * centres[other.integers(0, CLUSTERS, m)] / np.sqrt(dim)
        + 2 * other.standard_normal((m, dim)) / np.sqrt(dim)
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries_and_truth(emb: Path, n_queries: int) -> dict:
    """Half corpus notes, half fresh vectors, and the exact top K of each from one pass over the shards."""
    import numpy as np

    from embednv.index.build import _rows_at
    from embednv.shards import iter_batches, open_shards

    shards = open_shards(str(emb))
    rng = np.random.default_rng(SEED + 7)
    positions = np.sort(rng.choice(shards.n_rows, n_queries // 2, replace=False))
    vectors = np.concatenate([_rows_at(shards, positions), fresh_vectors(n_queries - len(positions), shards.dim, 99)])
    own = np.concatenate([positions, np.full(n_queries - len(positions), -1)])  # -1: not in the corpus
    started = time.perf_counter()
    best_s, best_p, start = np.empty((n_queries, 0), np.float32), np.empty((n_queries, 0), np.int64), 0
    for _, batch in iter_batches(shards, 16_384):
        scores = vectors @ batch.T
        rows = np.arange(start, start + len(batch))
        start += len(batch)
        scores[own[:, None] == rows[None, :]] = -np.inf
        best_s = np.concatenate([best_s, scores], 1)
        best_p = np.concatenate([best_p, np.broadcast_to(rows, scores.shape)], 1)
        top = np.argpartition(-best_s, K - 1, axis=1)[:, :K]
        best_s, best_p = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_p, top, 1)
    return {"vectors": vectors, "own": own, "truth": best_p, "exact_pass_s": round(time.perf_counter() - started, 1)}


def measure_kind(emb: Path, kind: str, q: dict) -> dict:
    """Build with the real command, then time and score IndexSearch.nearest on every query."""
    import numpy as np
    import pyarrow as pa

    from embednv.index.search import open_search
    from embednv.shards import open_shards

    built = run_timed(
        [sys.executable, "-m", "embednv.cli", "index", str(emb), "--kind", kind, "--overwrite"],
        env=subprocess_env(),
        sample_memory=True,
    )
    if built["returncode"] != 0:
        raise SystemExit(f"embednv index --kind {kind} failed: {built['stderr_tail']}")
    record = json.loads((emb / "_index" / "index.json").read_text())
    shards = open_shards(str(emb))
    started = time.perf_counter()
    search = open_search(str(emb), shards)
    open_ms = (time.perf_counter() - started) * 1e3
    ids = search.ids.combine_chunks().to_numpy()  # position -> id, to score answers by position
    latencies, recalls = [], {"corpus": [], "fresh": []}
    for vector, own, truth in zip(q["vectors"], q["own"], q["truth"]):
        exclude = int(ids[own]) if own >= 0 else None
        started = time.perf_counter()
        table = search.nearest(vector, K, exclude=exclude)
        latencies.append((time.perf_counter() - started) * 1e3)
        found = set(table.column(0).to_numpy())
        recalls["corpus" if own >= 0 else "fresh"].append(len(found & set(ids[truth])) / K)
    assert isinstance(table, pa.Table)
    lat = sorted(latencies)
    near = int(ids[next(own for own in q["own"] if own >= 0)])
    vectors_bytes = record["n"] * record["dim"] * 4
    return {
        "kind": kind,
        "factory": record["factory"],
        "nlist": record["params"]["nlist"],
        "nprobe": record["params"]["nprobe"],
        "calibration_recall": record["calibration"]["recall_at_k"],
        "recall_by_nprobe": record["calibration"]["recall_by_nprobe"],
        "build_seconds": record["build_seconds"],
        "phase_seconds": record["phase_seconds"],
        "command_seconds": round(built["seconds"], 1),
        "peak_rss_mib": built["memory"]["driver_peak_rss_mib"],
        "index_bytes": record["bytes"]["index"],
        "ids_bytes": record["bytes"]["ids"],
        "size_vs_vectors": round((record["bytes"]["index"] + record["bytes"]["ids"]) / vectors_bytes, 3),
        "open_ms": round(open_ms, 1),
        "queries": len(latencies),
        "median_ms": round(statistics.median(lat), 2),
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
        "recall_at_50": round(float(np.mean(recalls["corpus"] + recalls["fresh"])), 4),
        "recall_at_50_corpus_queries": round(float(np.mean(recalls["corpus"])), 4),
        "recall_at_50_fresh_queries": round(float(np.mean(recalls["fresh"])), 4),
        "min_recall_one_query": round(float(min(recalls["corpus"] + recalls["fresh"])), 2),
        "cli_near_s": cli_seconds(emb, near),  # a new process each time: imports, footers, the id lookup, the search
    }


def cli_seconds(emb: Path, note_id: int, *extra: str, repeats: int = 3) -> list[float]:
    out = []
    for _ in range(repeats):
        cmd = [sys.executable, "-m", "embednv.cli", "cohort", str(emb), "--near", str(note_id), "--k", str(K), *extra]
        done = run_timed(cmd, env=subprocess_env())
        if done["returncode"] != 0:
            raise SystemExit(f"embednv cohort failed: {done['stderr_tail']}")
        out.append(round(done["seconds"], 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--kinds", default="ivf,ivf-fp16,ivf-sq8")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--workdir", help="keep the shards here and reuse them on a rerun with the same n and dim")
    ap.add_argument("--json")
    args = ap.parse_args()
    machine, started = machine_info(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        emb = Path(args.workdir or tmp) / f"emb-{args.n}x{args.dim}"
        t = time.perf_counter()
        if not (emb / "_manifest.json").is_file():
            write_synthetic(emb, args.n, args.dim, seed=SEED, k=CLUSTERS)
        generate_s = round(time.perf_counter() - t, 1)
        shard_bytes = sum(p.stat().st_size for p in emb.glob("part-*.parquet"))
        log(f"index bench: {args.n:,} x {args.dim} in {shard_bytes / 2**20:,.0f} MiB of shards ({generate_s} s)")
        q = queries_and_truth(emb, args.queries)
        log(f"index bench: exact top {K} of {args.queries} queries in {q['exact_pass_s']} s")
        runs = []
        for kind in args.kinds.split(","):
            runs.append(measure_kind(emb, kind, q))
            log(f"index bench: {json.dumps(runs[-1])}")
        cli_exact_s = cli_seconds(emb, int(q["own"][0]), "--exact", repeats=1)  # ids are positions here
        log(f"index bench: cohort --near --exact: {cli_exact_s} s")
    emit(
        {
            "command": f"python bench/cohort_index.py --n {args.n} --dim {args.dim} --kinds {args.kinds} --queries {args.queries}",
            "n": args.n,
            "dim": args.dim,
            "k": K,
            "clusters": CLUSTERS,
            "queries": args.queries,
            "goal_recall": GOAL_RECALL,
            "goal_median_ms": GOAL_MEDIAN_MS,
            "vectors_bytes": args.n * args.dim * 4,
            "shard_bytes": shard_bytes,
            "generate_s": generate_s,
            "exact_pass_s": q["exact_pass_s"],
            "runs": runs,
            "cli_near_exact_s": cli_exact_s,
            "seconds": round(time.perf_counter() - started, 1),
            "machine": machine,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # other work on a shared machine moves the timings
            "git_commit": git_commit(),
            "generated_at": now(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
