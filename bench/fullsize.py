"""`make check-fullsize`: the real `embednv embed` on a full-size NV-Embed-v2 checkpoint, on CPU.

    python bench/fullsize.py --json docs/benchmarks-fullsize.json [--workdir DIR] [--notes 6]

Writes a random checkpoint in the official layout (7.85B parameters, bfloat16, 4 shards plus the
index, ~15.7 GB; `bench/checkpoint.py`), runs the CLI on it (Ray, the CPU actor, `--device cpu
--dtype bfloat16`) over a few short notes, checks the output holds 4096-d unit vectors, and
reports the embed actor's peak host memory (RSS and USS, sampled every 0.25 s by
`bench.common.TreeMemorySampler`) as a multiple of the checkpoint size: the goal is at most
1.10x, i.e. loading keeps no second copy. The checkpoint is deleted at the end, also on failure.

Not part of `make test`: it needs ~16 GB of free disk and ~18 GiB of free memory, and takes
minutes (a 7B model runs at about a token per second on 2 cores, hence short notes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import emit, git_commit, log, machine_info, now, run_timed, subprocess_env  # noqa: E402

GOAL_RATIO = 1.10  # peak actor memory / checkpoint bytes: the weights once, plus ~10% for everything else
DISK_MARGIN = 1 << 30  # tokenizer, output and slack beside the weights
MEMORY_MARGIN = 1.15  # refuse below this multiple of the checkpoint in available memory: a shared machine
NOTES = [  # short on purpose: bf16 matmuls run at ~14 GFLOP/s on 2 cores, ~16 GFLOP per token
    "Chest pain radiating to the left arm.",
    "Follow up for type 2 diabetes, A1c 7.9.",
    "Knee effusion after a fall.",
    "Shortness of breath on exertion, no fever.",
    "Laceration of the left hand, sutured.",
    "Hypertension, well controlled on lisinopril.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the result here too (docs/benchmarks-fullsize.json)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the checkpoint goes (default: a temporary directory)"
    )
    parser.add_argument("--notes", type=int, default=len(NOTES), help=f"notes to embed, at most {len(NOTES)}")
    args = parser.parse_args()

    import psutil

    from bench.checkpoint import OFFICIAL_CONFIG, checkpoint_bytes

    size = checkpoint_bytes(OFFICIAL_CONFIG)
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    need, free = size + DISK_MARGIN, shutil.disk_usage(parent).free
    log(f"fullsize: the checkpoint needs {need / 1e9:.1f} GB of free disk in {parent}; {free / 1e9:.1f} GB free")
    if free < need:
        sys.exit(
            f"fullsize: not enough free disk in {parent}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed; pass --workdir"
        )
    available = psutil.virtual_memory().available
    if available < MEMORY_MARGIN * size:
        sys.exit(
            f"fullsize: {available / 2**30:.1f} GiB of memory available, {MEMORY_MARGIN * size / 2**30:.1f} GiB needed "
            "to hold the model once with room for Ray: try again on a quieter machine"
        )

    work = Path(tempfile.mkdtemp(prefix="embednv-fullsize-", dir=parent))
    try:
        document = run(work, size, NOTES[: args.notes])
    finally:
        shutil.rmtree(work, ignore_errors=True)  # 15.7 GB: never left behind
        log(f"fullsize: removed {work}")
    emit(document, args.json)
    if not document["ok"]:
        sys.exit(1)


def run(work: Path, size: int, notes: list[str]) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.checkpoint import OFFICIAL_CONFIG, write_random_checkpoint, write_tokenizer

    started = time.perf_counter()
    checkpoint = work / "nvembed"
    log("fullsize: writing the checkpoint (random bf16 weights, tiled)")
    written = write_random_checkpoint(checkpoint, OFFICIAL_CONFIG, shards=4, method="tiled")
    written["tokenizer"] = write_tokenizer(checkpoint, 32000)
    written["files_bytes"] = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    log(f"fullsize: {written['files_bytes'] / 1e9:.2f} GB in {written['seconds']} s; tokenizer: {written['tokenizer']}")

    source, out = work / "notes.parquet", work / "out"
    pq.write_table(pa.table({"note_id": pa.array(range(len(notes)), pa.int64()), "text": notes}), source)
    cmd = [sys.executable, "-m", "embednv.cli", "embed", str(source), "--out", str(out), "--model", str(checkpoint),
           "--device", "cpu", "--dtype", "bfloat16"]  # fmt: skip
    log(f"fullsize: {' '.join(cmd[1:])}")
    result = run_timed(cmd, env=subprocess_env(), sample_memory=True, timeout=3600)
    summary = result["stdout"].strip().splitlines()[-1] if result["stdout"].strip() else ""
    log(f"fullsize: exit {result['returncode']} in {result['seconds']:.0f} s: {summary}")

    memory = result["memory"]
    check: dict = {"returncode": result["returncode"]}
    if result["returncode"] == 0:
        table = pq.read_table(out, columns=["note_id", "embedding", "n_tokens"]).sort_by("note_id")
        vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        manifest = json.loads((out / "_manifest.json").read_text())
        norms = np.linalg.norm(vectors, axis=1)
        check.update(rows=len(table), dim=int(vectors.shape[1]), max_norm_error=float(np.abs(norms - 1).max()),
                     finite=bool(np.isfinite(vectors).all()), tokens=int(manifest["tokens"]),
                     run_seconds=manifest.get("seconds_this_run"))  # fmt: skip
        check["ok"] = (
            check["rows"] == len(notes) and check["dim"] == 4096 and check["finite"] and check["max_norm_error"] < 1e-3
        )
    else:
        check.update(ok=False, stderr_tail=result["stderr_tail"][-1500:])

    rss, uss = memory["single_worker_peak_rss_mib"] * 2**20, memory["single_worker_peak_uss_mib"] * 2**20
    tokens = check.get("tokens")
    return {
        "command": "make check-fullsize (python bench/fullsize.py --json docs/benchmarks-fullsize.json)",
        "generated_at": now(), "git_commit": git_commit(), "machine": machine_info(),
        "checkpoint": written, "notes": len(notes), "embed_command": " ".join(["embednv", *cmd[3:]]).replace(str(work), "$WORK"),
        "cli_summary": summary, "check": check, "ok": bool(check["ok"]),
        "wall_seconds": round(result["seconds"], 1),
        # The CLI's whole run (Ray start, reading 15.7 GB, tokenizing, embedding): a token rate of a
        # 7B model on this CPU, start-up included, not a throughput to plan with.
        "tokens_per_s_whole_run": round(tokens / result["seconds"], 3) if tokens else None,
        "tokens_per_s_embednv_clock": round(tokens / check["run_seconds"], 3) if tokens and check.get("run_seconds") else None,
        "memory": memory,
        "actor_peak_rss_over_checkpoint": round(rss / size, 3),
        "actor_peak_uss_over_checkpoint": round(uss / size, 3),
        "goal_ratio": GOAL_RATIO,
        "goal_met": bool(check["ok"]) and rss / size <= GOAL_RATIO,  # a run that did not finish meets nothing
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


if __name__ == "__main__":
    main()
