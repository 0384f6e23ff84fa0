"""NV-Embed-v2's forward before and after packing (issue 24): peak memory, FLOPs, CPU speed, parity.

    python bench/nvembed_model.py --json docs/benchmarks-nvembed-model.json   # ~20 minutes on 2 busy cores
    python bench/nvembed_model.py --quick --json /tmp/model.json             # tiny sizes only, ~2 minutes

"Before" is embednv/models/nvembed.py at --base (default `BEFORE`: main just before the packed
forward of issue 24), loaded from git into a module of its own; "after" is this checkout's. Both
get the same weights and the same windows. "Real width"
is NV-Embed-v2's (hidden 4096, 32 heads over 8 KV heads, MLP 14,336, the 512-latent 8 x 4096 head)
at 2 layers, with a 256-token vocabulary (the embedding table is a lookup: its size costs nothing).

1. batch: MTSamples notes (../shared/data; else the synthetic sample corpus) tokenized with
   Mistral-7B's vocabulary and NV-Embed's template, as queries (the `similar-notes` instruction)
   and as documents, cut into micro-batches by the pipeline's own planning at the GPU budget
   (65,536 tokens); "the" micro-batch is a full query batch (>= 95% of the budget, padded) whose
   median window is nearest the corpus's median window.
2. memory: peak bytes of tensors alive at once during one forward of that micro-batch in bf16 (the
   GPU dtype), counted op by op on the meta device, so no arithmetic runs: an op's outputs count
   from when it returns until their last reference dies. An attention op counts as its output
   only, as a fused kernel (FlashAttention, or the memory-efficient kernel the old masked call
   got) keeps no T x T matrix. Weights and the input ids are not counted. Checked against real
   float32 CPU runs of the pooling head (RSS high-water of a fresh process) at a size both can do.
3. flops: executed FLOPs of that forward (torch's FlopCounterMode on the meta device, attention
   by SDPA per run of equal windows: FlashAttention's varlen kernel skips the same work) against
   the useful ones: real tokens through the backbone, attention within each window, the head on
   pooled tokens only, the latents' keys and values once. Then over every micro-batch, analytically.
4. speed: seconds of one forward before and after on a micro-batch of unequal windows, alternated,
   median of repeats, `--threads` torch threads (default 1: on a shared machine, two threads wait
   on each other at every op), as CPU time of the process (wall time is recorded too). The tiny
   test checkpoint at the CPU budget (4,096 tokens), eager and with `compile_blocks`; real width
   on a few hundred tokens. The memory check of the head (section 2) runs at the default threads.
5. parity: cosine to the float64 reference of tests/models/test_nvembed.py (tiny and real width), and
   bfloat16 against float32 on the same weights.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "models")]  # the reference: with the tests

from bench.checkpoint import OFFICIAL_CONFIG, TINY_CONFIG, write_random_checkpoint, write_tokenizer  # noqa: E402
from bench.common import emit, git_commit, log, machine_info, mtsamples_path, now  # noqa: E402
from bench.nvembed_memory import LiveTensorBytes, flops, head_rss, useful_flops  # noqa: E402
from embednv.models import nvembed as after  # noqa: E402

REAL_CONFIG = {**OFFICIAL_CONFIG, "text_config": {**OFFICIAL_CONFIG["text_config"], "num_hidden_layers": 2,
                                                  "vocab_size": 256}}  # fmt: skip
GPU_BUDGET, CPU_BUDGET = 65_536, 4_096
MEMORY_GOAL, FLOPS_GOAL, COSINE_GOAL = 2.0, 0.99, 0.9999
BEFORE = "67573de"  # the last commit with the padded forward (right padding, masks, head on every token)
# Unequal windows of one micro-batch, as plan_batches groups them: 3,410 tokens padded to 4,095
# (the CPU budget) for the tiny model; a few hundred tokens at real width (~40 s a forward).
TINY_WINDOWS = [455, 430, 410, 395, 380, 360, 350, 330, 300]
REAL_WINDOWS = [120, 96, 64]


def load_before(base: str):
    """The model module as it was at `base`, from git, under its own name."""
    source = subprocess.run(["git", "show", f"{base}:embednv/models/nvembed.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("nvembed_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{base}:embednv/models/nvembed.py", "exec"), module.__dict__)
    return module


def resolved(revision: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", revision], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def forward_before(before, model, windows: list[list[int]], n_skip: int) -> torch.Tensor:
    """The old path: right-padded (B, T) batch, key-padding mask, head on every position."""
    device = next(model.parameters()).device
    encoder = before.NVEmbedEncoder.from_model(model, pad_id=2, n_pool_skip=n_skip)
    ids, attention, pool = (None if t is None else t.to(device) for t in encoder.collate(windows))
    return model(ids, attention, pool)


def forward_after(model, windows: list[list[int]], n_skip: int, kernel: str = "auto") -> torch.Tensor:
    device = next(model.parameters()).device
    return model(after.Packed.from_sequences(windows, n_skip).to(device), kernel)


def models_on_meta(before, config: dict, dtype: torch.dtype):
    with torch.device("meta"):
        old = before.NVEmbedModel(before.NVEmbedConfig.from_checkpoint_config(config)).to(dtype)
        new = after.NVEmbedModel(after.NVEmbedConfig.from_checkpoint_config(config)).to(dtype)
    return old.eval().requires_grad_(False), new.eval().requires_grad_(False)


def micro_batches(quick: bool) -> dict:
    """Window lengths of the corpus as queries and as documents, and the pipeline's micro-batches."""
    from bench.padding import embednv_batches
    from embednv.embed.config import EmbedConfig
    from embednv.embed.tokenize import NoteTokenizer
    from embednv.models.nvembed import load_nvembed_tokenizer

    path = mtsamples_path()
    if path is not None:
        import pyarrow.parquet as pq

        texts = [t for t in pq.read_table(path, columns=["transcription"]).column(0).to_pylist() if t and t.strip()]
        corpus = "MTSamples"
    else:
        from embednv.sample_corpus import generate_notes

        texts = [text for _, chunk, _ in generate_notes(2_000, seed=0) for text in chunk]
        corpus = "synthetic sample corpus"
    texts = texts[:300] if quick else texts
    with tempfile.TemporaryDirectory() as tmp:
        vocabulary = write_tokenizer(tmp, 32000)
        hf = load_nvembed_tokenizer(tmp)
    defaults = EmbedConfig(inputs=(), out="")
    out = {"corpus": corpus, "notes": len(texts), "tokenizer": vocabulary}
    for side, instruction in (("query", after.build_instruction("similar-notes")), ("document", "")):
        notes = NoteTokenizer(hf, after.DEFAULT_MAX_TOKENS, prefix=instruction, suffix=hf.eos_token)(texts)
        lengths, batches = embednv_batches([[len(w) for w in n.windows] for n in notes], GPU_BUDGET,
                                           defaults.window_rows, defaults.rows_per_shard)  # fmt: skip
        n_skip = len(hf.tokenize(instruction)) if instruction else 0
        out[side] = {"lengths": lengths, "batches": [b.indices for b in batches], "n_skip": n_skip}
    lengths = out["query"]["lengths"]
    batches = [sorted((lengths[i] for i in b), reverse=True) for b in out["query"]["batches"]]
    full = [b for b in batches if len(b) * b[0] >= 0.95 * GPU_BUDGET] or [max(batches, key=sum)]
    median = float(np.median(lengths))
    out["chosen"] = min(full, key=lambda b: abs(float(np.median(b)) - median))
    return out


def random_windows(lengths: list[int], vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[1] + rng.integers(3, vocab, n - 1).tolist() for n in lengths]


def memory_and_flops(before, lengths: list[int], n_skip: int) -> dict:
    """The chosen micro-batch at real width on the meta device: peak live bytes (bf16) and FLOPs."""
    old, new = models_on_meta(before, REAL_CONFIG, torch.bfloat16)
    windows = random_windows(lengths, 256)
    result = {"windows": len(lengths), "real_tokens": sum(lengths), "padded_tokens": len(lengths) * max(lengths),
              "pooled_tokens": sum(n - n_skip for n in lengths), "n_skip": n_skip}  # fmt: skip
    for name, model, run in (("before", old, lambda: forward_before(before, old, windows, n_skip)),
                             ("after", new, lambda: forward_after(new, windows, n_skip, kernel="sdpa"))):  # fmt: skip
        with torch.inference_mode():
            tracker = LiveTensorBytes(known=list(model.parameters()))
            with tracker:
                run()
            result[f"peak_gib_{name}"] = round(tracker.peak / 2**30, 2)
            result[f"peak_where_{name}"] = tracker.peak_op
            result[f"flops_{name}"] = flops(run)
    cfg = after.NVEmbedConfig.from_checkpoint_config(REAL_CONFIG)
    result["flops_useful"] = useful_flops(cfg, lengths, n_skip)
    for name in ("before", "after"):
        result[f"useful_over_executed_{name}"] = round(result["flops_useful"] / result[f"flops_{name}"], 4)
    result["memory_ratio"] = round(result["peak_gib_before"] / result["peak_gib_after"], 2)
    return result


def corpus_flops(batches: dict) -> dict:
    """useful / executed FLOPs over every micro-batch of the corpus, before and after (analytic)."""
    cfg = after.NVEmbedConfig.from_checkpoint_config({**OFFICIAL_CONFIG})  # all 32 layers here
    out = {}
    for side in ("query", "document"):
        lengths, n_skip = batches[side]["lengths"], batches[side]["n_skip"]
        useful = executed = 0
        for indices in batches[side]["batches"]:
            real = [lengths[i] for i in indices]
            useful += useful_flops(cfg, real, n_skip)
            executed += useful_flops(cfg, [max(real)] * len(real), 0)  # before: every padded position, all pooled
        out[side] = {"micro_batches": len(batches[side]["batches"]), "useful_over_executed_before": round(useful / executed, 4),
                     "useful_over_executed_after": 1.0}  # fmt: skip
    return out


def seconds(run, repeats: int, wall: list[float] | None = None) -> list[float]:
    """CPU seconds of this process per call (appending wall seconds to `wall`): on a machine others
    share, the time slices they take inflate wall time, not the CPU time a call itself uses."""
    times = []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            run()
        times.append(round(time.process_time() - cpu, 4))
        if wall is not None:
            wall.append(round(time.perf_counter() - started, 4))
    return times


def speed_and_parity(
    before, config: dict, lengths: list[int], n_skip: int, repeats: int, tmp: Path, tiny: bool
) -> dict:
    """Before and after on CPU, alternated, on the same weights; cosine to the reference; bf16 vs fp32."""
    from test_nvembed import reference_embed

    path = tmp / ("tiny" if tiny else "real")
    write_random_checkpoint(path, config, shards=2, dtype=torch.float32, seed=1)
    new = after.load_nvembed(path, "cpu", "float32")
    with torch.device("meta"):
        old = before.NVEmbedModel(before.NVEmbedConfig.from_checkpoint_config(config))
    old.load_state_dict(new.state_dict(), assign=True)  # the same tensors: one copy of the weights
    old.eval()
    windows = random_windows(lengths, config["text_config"]["vocab_size"], seed=2)
    runs = {
        "before": lambda: forward_before(before, old, windows, n_skip),
        "after": lambda: forward_after(new, windows, n_skip),
    }
    times: dict[str, list[float]] = {"before": [], "after": []}
    walls: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeats):  # alternated, so that a busy spell on the machine hits both
        for name, run in runs.items():
            times[name] += seconds(run, 1, walls[name])
    with torch.inference_mode():
        got, old_got = forward_after(new, windows, n_skip).numpy(), runs["before"]().numpy()
    out = {"windows": lengths, "n_skip": n_skip, "seconds_before": times["before"], "seconds_after": times["after"],
           "wall_seconds_before": walls["before"], "wall_seconds_after": walls["after"],
           "median_before": float(np.median(times["before"])), "median_after": float(np.median(times["after"]))}  # fmt: skip
    out["speedup"] = round(out["median_before"] / out["median_after"], 2)
    out["cosine_after_vs_before_min"] = round(float(np.sum(got * old_got, axis=1).min()), 6)
    if tiny:  # compile_blocks: the first call compiles, then the same batch again
        new.compile_blocks()
        out["compile_seconds_first_call"] = round(seconds(runs["after"], 1)[0], 1)
        out["seconds_after_compiled"] = seconds(runs["after"], repeats)
        out["median_after_compiled"] = float(np.median(out["seconds_after_compiled"]))
        out["speedup_compiled"] = round(out["median_before"] / out["median_after_compiled"], 2)
    runs.clear()
    old = new = None  # before loading the bfloat16 copy
    gc.collect()
    low = after.load_nvembed(path, "cpu", "bfloat16")
    with torch.inference_mode():
        bf16 = forward_after(low, windows, n_skip).numpy()
    del low
    gc.collect()  # the reference reads one weight at a time
    want = np.stack([reference_embed(path, w, n_skip) for w in windows[:2]])
    out["cosine_vs_reference_min"] = round(float(np.sum(got[:2] * want, axis=1).min()), 7)
    out["cosine_bf16_vs_fp32_min"] = round(float(np.sum(got * bf16, axis=1).min()), 5)
    out["reference_windows"] = 2
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BEFORE, help="git revision of the 'before' model file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes only: a smoke run of every section")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the timed sections")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--head-rss", choices=["before", "after"], help=argparse.SUPPRESS)  # one child run
    parser.add_argument("--tokens", type=int, default=2048, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.head_rss:
        print(
            json.dumps(
                head_rss(load_before(args.base) if args.head_rss == "before" else after, args.tokens, REAL_CONFIG)
            )
        )
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    before = load_before(args.base)
    doc = {"generated_at": now(), "git_commit": git_commit(), "base": resolved(args.base), "machine": machine_info(),
           "torch": torch.__version__, "threads": args.threads, "quick": args.quick,
           "goals": {"memory_ratio": MEMORY_GOAL, "useful_over_executed": FLOPS_GOAL, "cosine": COSINE_GOAL},
           "command": "python bench/nvembed_model.py" + (" --quick" if args.quick else "")}  # fmt: skip
    log("nvembed_model: tokenizing the corpus and planning micro-batches")
    batches = micro_batches(args.quick)
    doc["batch"] = {k: batches[k] for k in ("corpus", "notes", "tokenizer")}
    doc["corpus_flops"] = corpus_flops(batches)
    lengths = batches["chosen"] if not args.quick else batches["chosen"][:8]
    log(f"nvembed_model: memory and FLOPs of a {sum(lengths):,}-token micro-batch on the meta device")
    doc["micro_batch"] = memory_and_flops(before, lengths, batches["query"]["n_skip"])
    if not args.quick:
        log("nvembed_model: the head's real peak memory on CPU, before and after (two fresh processes)")
        doc["head_check"] = check_head_memory(args)
    n_skip = batches["query"]["n_skip"]  # the similar-notes instruction's pool skip
    with tempfile.TemporaryDirectory(prefix="nvembed-model-") as tmp:
        log("nvembed_model: tiny checkpoint, before vs after on CPU")
        doc["tiny"] = speed_and_parity(before, TINY_CONFIG, TINY_WINDOWS, n_skip, args.repeats, Path(tmp), True)
        if not args.quick:
            log("nvembed_model: real width (2 layers), before vs after on CPU")
            repeats = args.repeats + 1  # few tokens: the load of the machine varies more than the paths
            doc["real_width"] = speed_and_parity(before, REAL_CONFIG, REAL_WINDOWS, n_skip, repeats, Path(tmp), False)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    emit(doc, args.json)


def check_head_memory(args) -> dict:
    """The meta-device count against a real run, for the pooling head alone at `--tokens` float32 tokens."""
    out = {"tokens": args.tokens, "dtype": "float32"}
    for name in ("before", "after"):
        cmd = [sys.executable, __file__, "--head-rss", name, "--tokens", str(args.tokens), "--base", args.base]
        child = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
        out[name] = json.loads(child.stdout.strip().splitlines()[-1])
    return out


if __name__ == "__main__":
    main()
