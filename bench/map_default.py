"""`embednv map` with its defaults, end to end, at 10k, 50k and 100k points: does it finish, and how well?

    python bench/map_default.py [--sizes 10000,50000,100000] [--dim 4096] [--json docs/benchmarks-map-default.json]

The user's command exactly (`embednv map EMB_DIR --out MAP_DIR`, nothing tuned), on planted
synthetic shards (`bench_map.write_synthetic`: 30 clusters around a shared direction) at
NV-Embed-v2's width. For each size: wall time of the whole command (reading, PCA, k-means,
t-SNE, metrics, PNG and HTML) and its map-quality metrics. At the sizes where the default is
multi-scale, the same map with `--multiscale off` runs beside it, so the two can be compared
on the same data. Goal (issue 14): the default finishes 100k points in under 5 minutes here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_map import write_synthetic  # noqa: E402
from bench.common import emit, git_commit, log, machine_info, now, subprocess_env  # noqa: E402

GOAL_S = 300
METRICS = ("knn_preservation_10", "silhouette", "inertia")


def run_map(emb_dir: Path, out: Path, *extra: str) -> dict:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "embednv.cli", "map", str(emb_dir), "--out", str(out), *extra]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"embednv map failed ({done.returncode}): {done.stderr[-2000:]}")
    manifest = json.loads((out / "_manifest.json").read_text())
    scores = json.loads((out / "metrics.json").read_text())
    return {
        "seconds": round(seconds, 1),
        "options": " ".join(extra) or "(defaults)",
        "perplexities": manifest["tsne"]["perplexities"],
        "k": manifest["clusters"]["k"],
        "groups": manifest["clusters"].get("groups"),
        "phases_s": manifest["timings_s"],
        **{m: scores.get(m) for m in METRICS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--json")
    args = ap.parse_args()
    runs = []
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-map-default-") as tmp:
        for n in map(int, args.sizes.split(",")):
            emb = Path(tmp) / f"emb-{n}"
            write_synthetic(emb, n, args.dim, seed=0)
            result = {"n": n, "default": run_map(emb, Path(tmp) / f"map-{n}")}
            log(f"map default {n:,}: {result['default']}")
            if len(result["default"]["perplexities"]) > 1:
                result["single_scale"] = run_map(emb, Path(tmp) / f"map-{n}-single", "--multiscale", "off")
                log(f"map single-scale {n:,}: {result['single_scale']}")
            runs.append(result)
    emit(
        {
            "command": f"python bench/map_default.py --sizes {args.sizes} --dim {args.dim}",
            "goal_s": GOAL_S,
            "dim": args.dim,
            "runs": runs,
            "machine": machine,
            "git_commit": git_commit(),
            "generated_at": now(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
