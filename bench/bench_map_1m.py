"""`embednv map --texts` at a million notes, phase by phase, and the driver's memory for note text at two sizes.

    python bench/bench_map_1m.py [--n 1000000] [--dim 384] [--notes-sizes 100000,1000000] [--skip-map]
        [--workdir DIR] [--json docs/benchmarks-map-1m.json]

Two measurements (`make bench-map-1m`, apart from `make bench`: it takes the machine for long):
- **notes**: for each of --notes-sizes, in a fresh process, what the map's driver does with
  `--texts` (`note_columns.read_note_columns`: stream the texts file, join it to the map's ids,
  count each cluster's terms; then c-TF-IDF), timed, with the process's peak RSS while it ran
  (the kernel's high-water mark, reset when it starts) and the RSS before it; --repeats runs per
  size, sizes alternating, and the medians. Acceptance (issue 23): the peak at the largest size
  within 10% of the smallest.
- **map**: the user's command, `embednv map EMB --out MAP --texts NOTES`, end to end at --n, in
  its own process; each phase's time and peak RSS come from the map's own manifest
  (`timings_s`, `peak_rss_mb`), the process's peak as the largest of them. Goal: under 30 minutes.

Inputs: `bench_map.write_synthetic` (planted clusters of unit vectors, ids 0..n-1) and the
notes of `embednv.sample_corpus` for the same ids (log-normal lengths, 14 specialties), both
kept in --workdir for a rerun. Prints one JSON document; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_map import write_synthetic  # noqa: E402
from bench.common import emit, git_commit, log, machine_info, now, subprocess_env  # noqa: E402

GOAL_S = 1800
FLAT_WITHIN = 0.10  # the notes phase's peak at the largest size vs the smallest


def write_notes(path: Path, n: int, seed: int = 0) -> None:
    """The sample corpus's notes under the synthetic shards' ids (0..n-1), written once per size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embednv.sample_corpus import generate_notes

    if path.exists():
        return
    schema = pa.schema([("note_id", pa.int64()), ("text", pa.large_string()), ("specialty", pa.string())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for ids, texts, specialties in generate_notes(n, seed):
            writer.write_table(pa.table([ids - 1, texts, specialties], schema=schema))
    tmp.rename(path)


def inputs(workdir: Path, n: int, dim: int) -> tuple[Path, Path]:
    emb, notes = workdir / f"emb-{n}-{dim}", workdir / f"notes-{n}.parquet"
    if not (emb / "_manifest.json").exists():
        write_synthetic(emb, n, dim, seed=0)
    write_notes(notes, n)
    return emb, notes


def notes_child(n: int, notes: Path) -> dict:
    """In a fresh process: the driver's notes phase on n map rows in 50 planted clusters."""
    import numpy as np
    import pyarrow as pa

    from embednv.mapping.note_columns import read_note_columns
    from embednv.runtime import peak_rss_mb, reset_peak_rss

    rng = np.random.default_rng(0)
    ids = pa.array(rng.permutation(n).astype(np.int64))  # the map's order is not the file's
    labels = rng.integers(0, 50, n, dtype=np.int32)  # cluster labels are int32 in the map (backends.py)
    rss_before = _rss_mb()
    reset_peak_rss()
    start = time.perf_counter()
    counts = read_note_columns(ids, "note_id", labels, 50, texts=(notes, "text"), labels=(notes, "specialty"))
    counts.term_counts.top()
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": round(seconds, 1), "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb()}


def run_map(emb: Path, notes: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "embednv.cli", "map", str(emb), "--out", str(out), "--texts", str(notes)]
    cmd += ["--labels-column", "specialty", "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": f"embednv map exited {done.returncode} after {seconds:.0f} s (its log is on stderr)"}
    manifest = json.loads((out / "_manifest.json").read_text())
    peaks = manifest.get("peak_rss_mb", {})
    # The process's peak is its largest phase's: the map resets the kernel's high-water mark as each phase
    # starts, which resets what getrusage reports for the child too.
    peak = max((p for p in peaks.values() if p is not None), default=None)
    phases = {k: {"seconds": round(v, 1), "peak_rss_mb": peaks.get(k)} for k, v in manifest["timings_s"].items()}
    return {
        "seconds": round(seconds, 1),
        "process_peak_rss_mb": peak,
        "phases": phases,
        "placement": manifest["placement"]["placement"],
        "backend": manifest["backend"],
        "tsne": {k: manifest["tsne"].get(k) for k in ("perplexities", "n_iter")},
        "html_points_drawn": manifest["render"].get("html_points_drawn"),
        "metrics": json.loads((out / "metrics.json").read_text()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="notes in the end-to-end map")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--notes-sizes", default="100000,1000000", help="sizes of the notes-phase measurement")
    ap.add_argument("--skip-map", action="store_true", help="only the notes-phase measurement")
    ap.add_argument("--repeats", type=int, default=3, help="notes-phase runs per size (the median is the figure)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep inputs here for a rerun (default: a temp dir)")
    ap.add_argument("--json")
    ap.add_argument("--child-notes", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_notes is not None:
        print(json.dumps(notes_child(args.child_notes, args.workdir / f"notes-{args.child_notes}.parquet")))
        return

    started, machine = time.perf_counter(), machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-map-1m-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sizes = [int(s) for s in args.notes_sizes.split(",") if s]
        runs: dict[int, list[dict]] = {n: [] for n in sizes}
        for _ in range(args.repeats):  # sizes alternate, so that drift on the machine reaches each alike
            for n in sizes:
                write_notes(workdir / f"notes-{n}.parquet", n)
                cmd = [sys.executable, __file__, "--child-notes", str(n), "--workdir", str(workdir)]
                done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
                run = {"error": done.stderr[-500:]} if done.returncode else json.loads(done.stdout.splitlines()[-1])
                runs[n].append(run)
                log(f"notes phase at {n:,}: {run}")
        notes_runs = [_median_run(n, runs[n]) for n in sizes]
        ok = [r for r in notes_runs if "error" not in r]
        growth = ok[-1]["peak_rss_mb"] / ok[0]["peak_rss_mb"] - 1 if len(ok) > 1 else None
        map_run = None
        if not args.skip_map:
            emb, notes = inputs(workdir, args.n, args.dim)
            log(f"inputs of {args.n:,} notes ready; embednv map --texts starts")
            map_run = {"n": args.n, "dim": args.dim, **run_map(emb, notes, workdir / f"map-{args.n}")}
            log(f"map of {args.n:,}: {map_run}")
    emit(
        {
            "command": f"python bench/bench_map_1m.py --n {args.n} --dim {args.dim} --notes-sizes {args.notes_sizes}"
            + f" --repeats {args.repeats}"
            + (" --skip-map" if args.skip_map else ""),
            "goal_s": GOAL_S,
            "flat_within": FLAT_WITHIN,
            "notes": notes_runs,
            "notes_peak_growth": None if growth is None else round(growth, 3),
            "map": map_run,
            "seconds": round(time.perf_counter() - started, 1),
            "machine": {**machine, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
            "git_commit": git_commit(),
            "generated_at": now(),
        },
        args.json,
    )


def _median_run(n: int, runs: list[dict]) -> dict:
    """One size's figures: the median of its runs (a process's peak RSS varies by a few percent from run to
    run with how the allocator's arenas fill), each run's peak kept beside it."""
    import statistics

    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"n": n, "error": runs[-1]["error"]}
    median = {k: statistics.median(r[k] for r in ok) for k in ("seconds", "rss_before_mb", "peak_rss_mb")}
    return {"n": n, **median, "peaks_mb": [r["peak_rss_mb"] for r in ok], "runs": len(ok)}


def _rss_mb() -> int:
    import psutil

    return psutil.Process().memory_info().rss // 2**20


if __name__ == "__main__":
    main()
