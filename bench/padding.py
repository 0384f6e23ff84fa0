"""Padding efficiency of embednv's batching against fixed batches of 32: pure computation, no model.

    python bench/padding.py [--sample-notes 20000] [--quick] [--json out.json]

Padding efficiency = real tokens / padded tokens processed (a batch of B windows padded to its
longest, W, processes B x W). Token windows come from the real path: the MiniLM tokenizer with
embednv's `NoteTokenizer` (512-token window, long notes split into overlapping windows as the
pipeline does). Strategies, each over every window of every note:

- embednv: rows cut into shards of `rows_per_shard`, each shard into windows of `window_rows`
  consecutive rows (as Ray Data hands them to the embed actor), and `plan_batches` run within
  each window with the default token budget (CPU 16,384; the GPU default 65,536 too);
- embednv without its efficiency floor (`min_efficiency=0`): what the floor buys;
- fixed batches of 32 windows in file order (what a plain loop does);
- a global length sort of the whole corpus, then fixed batches of 32 (needs the corpus in memory).

Corpora: MTSamples (../shared/data, skipped when absent) and the synthetic sample corpus.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import MTSAMPLES, MTSAMPLES_TEXT, emit, log, mtsamples_path  # noqa: E402
from embednv.embed.batching import MicroBatch, padding_efficiency, plan_batches  # noqa: E402
from embednv.embed.config import DEFAULT_BATCH_TOKENS, EmbedConfig  # noqa: E402

GOAL = 0.97
FIXED = 32


def note_windows(texts: Sequence[str | None]) -> list[list[int]]:
    """Per row, the token-window lengths the pipeline embeds (none for an empty row: an error row)."""
    from embednv.embed.tokenize import cached_note_tokenizer
    from embednv.models.registry import resolve_model

    tokenizer = cached_note_tokenizer(resolve_model("minilm", has_gpu=False), "")
    rows = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    lengths: list[list[int]] = [[] for _ in texts]
    for start in range(0, len(rows), 2_000):  # bounded batches: memory stays small on big corpora
        chunk = rows[start : start + 2_000]
        for row, note in zip(chunk, tokenizer([texts[i] for i in chunk])):
            lengths[row] = [len(w) for w in note.windows]
    return lengths


def embednv_batches(
    rows: list[list[int]], batch_tokens: int, window_rows: int, rows_per_shard: int, min_efficiency: float = 0.97
):
    """Micro-batches as the embed actor plans them: per window of rows within each shard."""
    flat, batches = [], []
    for shard_start in range(0, len(rows), rows_per_shard):
        shard = rows[shard_start : shard_start + rows_per_shard]
        for start in range(0, len(shard), window_rows):
            lengths = [n for note in shard[start : start + window_rows] for n in note]
            planned = plan_batches(lengths, batch_tokens, min_efficiency=min_efficiency)
            batches += [MicroBatch([i + len(flat) for i in b.indices], b.width) for b in planned]
            flat += lengths
    return flat, batches


def fixed_batches(lengths: list[int], size: int, sort: bool) -> list[MicroBatch]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    return [MicroBatch(c, max(lengths[i] for i in c)) for c in chunks]


def measure(name: str, rows: list[list[int]]) -> dict:
    defaults = EmbedConfig(inputs=(), out="")
    flat = [n for note in rows for n in note]
    strategies = {}

    def record(key: str, label: str, lengths: list[int], batches: list[MicroBatch]) -> None:
        strategies[key] = {
            "label": label,
            "padding_efficiency": round(padding_efficiency(lengths, batches), 4),
            "micro_batches": len(batches),
            "mean_windows_per_batch": round(len(lengths) / len(batches), 1) if batches else 0.0,
            "padded_tokens": sum(b.padded_tokens for b in batches),
        }

    for device in ("cpu", "cuda"):
        budget = DEFAULT_BATCH_TOKENS[device]
        lengths, batches = embednv_batches(rows, budget, defaults.window_rows, defaults.rows_per_shard)
        assert sorted(i for b in batches for i in b.indices) == list(range(len(lengths))), (
            "a window was planned twice or never"
        )
        record(
            f"embednv_{device}",
            f"embednv (window {defaults.window_rows:,} rows, budget {budget:,}, {device} default)",
            lengths,
            batches,
        )
    lengths, batches = embednv_batches(
        rows, DEFAULT_BATCH_TOKENS["cpu"], defaults.window_rows, defaults.rows_per_shard, min_efficiency=0.0
    )
    record(
        "embednv_no_floor", f"embednv without its 0.97 floor (budget {DEFAULT_BATCH_TOKENS['cpu']:,})", lengths, batches
    )
    record("fixed32_file_order", f"fixed batches of {FIXED}, file order", flat, fixed_batches(flat, FIXED, sort=False))
    record(
        "fixed32_global_sort",
        f"global length sort, then fixed batches of {FIXED}",
        flat,
        fixed_batches(flat, FIXED, sort=True),
    )
    notes = sum(1 for r in rows if r)
    return {
        "corpus": name,
        "rows": len(rows),
        "notes_embedded": notes,
        "windows": len(flat),
        "real_tokens": sum(flat),
        "notes_split": sum(1 for r in rows if len(r) > 1),
        "window_rows": defaults.window_rows,
        "rows_per_shard": defaults.rows_per_shard,
        "strategies": strategies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-notes", type=int, default=20_000, help="notes of the synthetic corpus")
    parser.add_argument(
        "--mtsamples-rows", type=int, default=None, help="only the first rows of MTSamples (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--json", default=None, help="also write the JSON document here")
    args = parser.parse_args()
    if args.quick:
        args.sample_notes, args.mtsamples_rows = 2_000, args.mtsamples_rows or 500

    import pyarrow.parquet as pq

    from embednv.sample_corpus import generate_notes

    started = time.perf_counter()
    corpora = {}
    path = mtsamples_path()
    if path is None:
        corpora["mtsamples"] = {"skipped": f"MTSamples not present at {MTSAMPLES}"}
    else:
        texts = pq.read_table(path, columns=[MTSAMPLES_TEXT]).column(0).to_pylist()[: args.mtsamples_rows]
        log(f"padding: tokenizing {len(texts):,} MTSamples rows")
        corpora["mtsamples"] = measure("MTSamples", note_windows(texts))
    texts = [t for _, chunk, _ in generate_notes(args.sample_notes, seed=0) for t in chunk]
    log(f"padding: tokenizing {len(texts):,} sample-corpus notes")
    corpora["sample_corpus"] = measure(f"sample corpus ({args.sample_notes:,} notes, seed 0)", note_windows(texts))
    emit(
        {
            "goal": GOAL,
            "tokenizer": "all-MiniLM-L6-v2 (bundled), max_tokens 512, overlap 64",
            "command": "python bench/padding.py"
            + (" --quick" if args.quick else f" --sample-notes {args.sample_notes}"),
            "corpora": corpora,
            "seconds": round(time.perf_counter() - started, 1),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
