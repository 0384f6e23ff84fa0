"""Lost work on a crash: SIGKILL `embednv embed` at 25/50/75% of a run, resume, count rows recomputed.

    python bench/crash.py [--notes 3000] [--json docs/benchmarks-crash.json]

A 3,000-note sample corpus (seed 0) is embedded with the bundled MiniLM on CPU, exactly as a
user runs it: the CLI in its own process session, stderr read like `ray job logs`
(`--log-every 1`). When the log says a fraction of the rows is embedded, the whole session
(driver and its private Ray) gets SIGKILL, like a lost node. Then a rerun of the same command
resumes: its first log line states how many rows it has to embed again, which is measured
against what the killed run had already embedded. The rerun after the 50% kill is run to
completion and checked (every id once); the others stop after that first line, since the
resume plan is deterministic (shards missing on disk). Done with the default shards (one
5,000-row shard holds the whole corpus) and with `--rows-per-shard 200`.

Bound (docs/reliability.md): rows recomputed <= rows not yet embedded at the kill
+ one window per actor (`--window-rows`, 1,024) + the rows of shards still being assembled.
Its section of docs/benchmarks.md is rendered by `report_separate.crash_section`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, git_commit, log, machine_info, now, subprocess_env  # noqa: E402

PROGRESS = re.compile(r"^embednv: ([\d,]+)/([\d,]+) rows embedded .*, ([\d,]+)/([\d,]+) shards written")
PLAN = re.compile(r"-> ([\d,]+) shards \(([\d,]+) to write, ([\d,]+) rows\)")
FRACTIONS = (0.25, 0.5, 0.75)
WINDOW_ROWS = 1024  # the CLI default: one window per actor in flight
SHARDINGS = {"default shards (5,000 rows)": [], "--rows-per-shard 200": ["--rows-per-shard", "200"]}


def embed_command(corpus: Path, out: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "embednv.cli",
        "embed",
        str(corpus),
        "--out",
        str(out),
        "--model",
        "minilm",
        "--log-every",
        "1",
        *extra,
    ]


def run_until(cmd: list[str], stop_when) -> tuple[list[str], bool]:
    """Run `cmd`, reading its stderr lines; SIGKILL its session once `stop_when(line)` is true."""
    process = subprocess.Popen(
        cmd,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines, killed = [], False
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if stop_when(lines[-1]):
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
            break
    process.wait()
    subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)  # anything left in the session
    return lines, killed


def rows_embedded(line: str) -> int | None:
    match = PROGRESS.match(line)
    return int(match[1].replace(",", "")) if match else None


def kill_and_resume(corpus: Path, workdir: Path, n: int, label: str, extra: list[str], fraction: float) -> dict:
    out = workdir / f"out-{len(extra)}-{fraction}"
    cmd = embed_command(corpus, out, extra)
    started = time.perf_counter()
    lines, killed = run_until(cmd, lambda line: (rows_embedded(line) or 0) >= fraction * n)
    at_kill = max((r for r in map(rows_embedded, lines) if r is not None), default=0)
    kill_s = time.perf_counter() - started
    on_disk = sum(1 for _ in out.glob("part-*.parquet"))
    complete = fraction == 0.5  # one rerun per sharding goes to the end and is checked
    resumed, _ = run_until(cmd, lambda line: not complete and bool(PLAN.search(line)))
    plan = next((PLAN.search(line) for line in resumed if PLAN.search(line)), None)
    recomputed = int(plan[3].replace(",", "")) if plan else 0  # no plan line: nothing left to do
    result = {
        "sharding": label,
        "kill_at": fraction,
        "killed": killed,
        "seconds_to_kill": round(kill_s, 1),
        "rows_embedded_at_kill": at_kill,
        "shards_on_disk_at_kill": on_disk,
        "rows_recomputed": recomputed,
        "rows_lost": max(0, recomputed - (n - at_kill)),  # embedded before the kill, embedded again
    }
    if complete:
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        ids = ds.dataset(str(out), format="parquet").to_table(columns=["note_id"]).column("note_id").to_pylist()
        expected = sorted(pq.read_table(corpus, columns=["note_id"]).column("note_id").to_pylist())
        result["resume_complete"] = (out / "_SUCCESS").exists() and sorted(ids) == expected
    log(f"crash: {label}, kill at {fraction:.0%}: {result}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes", type=int, default=3000)
    ap.add_argument("--json")
    args = ap.parse_args()
    from embednv.sample_corpus import write_sample_corpus

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        workdir = Path(tmp)
        corpus = workdir / "notes.parquet"
        write_sample_corpus(str(corpus), args.notes, seed=0)
        runs = [
            kill_and_resume(corpus, workdir, args.notes, label, extra, fraction)
            for label, extra in SHARDINGS.items()
            for fraction in FRACTIONS
        ]
    emit(
        {
            "command": "python bench/crash.py" + (f" --notes {args.notes}" if args.notes != 3000 else ""),
            "notes": args.notes,
            "model": "minilm (CPU)",
            "window_rows": WINDOW_ROWS,
            "actors": 1,
            "runs": runs,
            "machine": machine_info(),
            "git_commit": git_commit(),
            "generated_at": now(),
            "seconds": round(time.perf_counter() - started, 1),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
