"""GPU acceptance of the shipped code: full-size NV-Embed-v2 on one GPU, one command, one JSON.

    python3 bench/nvembed_device.py --mtsamples .gpu/mtsamples.parquet --tokenizer .gpu/tokenizer \
        --padded-model .gpu/nvembed_padded.py --figures $OUT --json $OUT/gpu_acceptance.json   # docs/nvembed.md
    python3 bench/nvembed_device.py --dry-run --json /tmp/acceptance.json   # tiny checkpoint on CPU (make test)

Needs what the device image has (torch, transformers, tokenizers, safetensors, pyarrow, scikit-learn,
matplotlib; cupy where present) plus openTSNE, which travels as a wheel (`make device-wheels`); never
Ray, never cuML (used when present). Nothing here re-implements embednv: every section runs the
package's own code, in this process. Each section ends `ok`, `partial` (it ran, but not all of it:
`why` says what is missing), `skipped` (with `why`) or `failed` (the error, or the goal missed).

1. checkpoint: a random NV-Embed-v2 in the official layout (bf16, 4 safetensors shards + index,
   the official config.json; `bench/checkpoint.py`, shared with `make check-fullsize`), weights
   drawn on the GPU; the tokenizer files of `--tokenizer DIR` (NV-Embed-v2's own form, as `make
   device-files` writes them with the official environment), else those `write_tokenizer` makes.
2. mtsamples: `run_embed(EmbedConfig(..., executor="local"))`, the local executor, on every note
   (`transcription`, id `note_id`; `--notes N` for the first N only): its summary gives rows, tokens,
   padding and seconds per stage (model load, read, tokenize, embed, write), so tokens/s and MFU are
   on the model stage's time; peak GPU memory of the run; the shards are read back.
3. load: `embednv.Embedder` on the checkpoint (bfloat16), for the sections below.
4. attention: one micro-batch of MTSamples windows (the one holding the median window, as the
   pipeline plans them) through the packed, padding-free forward (`kernel="auto"`: varlen
   FlashAttention on CUDA; and `"sdpa"`) and through the padded forward it replaced (the model file
   before the packed one, `--padded-model`, same weights): seconds, tokens/s, peak memory, cosine.
5. oom: a ~32k-token note in 4,096-token windows, embedded once freely, then again with
   `torch.cuda.set_per_process_memory_fraction` capped so that its batch of windows cannot fit:
   the batch is halved until it does, and the note is still embedded (split count reported).
6. cosine: bfloat16 against float32 (the same weights, upcast in memory) on 50 notes.
7. map: 100k synthetic 4096-d unit vectors through `run_map` (cuML when importable, else the CPU
   path: scikit-learn k-means, openTSNE t-SNE), map.png and map.html copied to `--figures`; where
   cuML is absent and cupy works, the shipped streaming PCA also runs on the GPU through cupy
   arrays, timed beside the CPU one. A phase that cannot run makes the section `partial`.

The JSON is rewritten after every section, so a run cut short still leaves what it measured.
`--dry-run` runs the same sections on CPU with a tiny checkpoint, a few notes (MTSamples when
given, else synthetic) and a small map; its "OOM" is simulated, as CPUs have no memory cap.

FLOPs per sequence of T real tokens (matmul = 2 FLOPs per multiply-add), as counted by `flops`:
    dense     = 2 * P * T, with P the weights every token is multiplied by: the 32 layers'
                q/k/v/o + gate/up/down projections and the head's to_q, to_out, GEGLU net.0/net.2
                (embedding lookup, norms and the per-batch latent to_kv projection excluded);
    attention = 4 * L * d_attn * T^2 (QK^T and AV in each of L layers, d_attn = heads * head_dim)
              + 4 * T * n_latents * d_inner (the head's cross-attention to 512 latents).
MFU = those FLOPs on real tokens / seconds / peak, the peak being the dense bf16 tensor-core figure
(H100 SXM and H200: 989 TFLOP/s; H100 PCIe: 756). Padding therefore lowers MFU, as it should.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from bench.common import git_commit, log, now  # noqa: E402
from embednv.models.nvembed import NVEmbedConfig  # noqa: E402

PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}
SECTIONS = ("mtsamples", "attention", "oom", "cosine", "map")
MODEL_SECTIONS = ("mtsamples", "attention", "oom", "cosine")
STATUSES = ("ok", "partial", "skipped", "failed")
COSINE_GOAL = 0.999
OOM_WINDOW = 4096  # tokens per window for the long note: ~8 windows, one batch under the default budget
# The model file before the packed, padding-free forward (commit 69809c2): the padded path it
# replaced, loaded beside it for the attention section. `make device-files` writes it to .gpu/.
PADDED_REVISION = "69809c2~1"
PADDED_FILE = REPO / ".gpu" / "nvembed_padded.py"


def flops(cfg: NVEmbedConfig, n_tokens: int) -> float:
    """Useful FLOPs for one sequence of `n_tokens` (formula in the module docstring)."""
    t, lat = cfg.text, cfg.latent
    d, d_attn, d_kv = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    inner = lat.num_cross_heads * lat.cross_dim_head
    backbone = t.num_hidden_layers * (2 * d * d_attn + 2 * d * d_kv + 3 * d * t.intermediate_size)
    head = 2 * d * inner + 12 * d * d  # to_q + to_out + GEGLU (d -> 8d, 4d -> d)
    attention = 4 * t.num_hidden_layers * d_attn * n_tokens**2 + 4 * n_tokens * lat.num_latents_value * inner
    return 2 * (backbone + head) * n_tokens + attention


class Report:
    """The one JSON document: each section's figures and its status (module docstring), with why when not ok."""

    def __init__(self, path: Path | None, header: dict):
        self.path, self.doc, self.started = path, {**header, "sections": {}}, time.perf_counter()

    def left(self, budget_s: float) -> float:
        return budget_s - (time.perf_counter() - self.started)

    @contextmanager
    def section(self, name: str):
        """Run a section; it may set status "partial" or "failed" with `why`; an exception is recorded
        (type, message, traceback tail) as "failed", and the next section runs."""
        log(f"acceptance: {name}")
        started = time.perf_counter()
        entry: dict = {}
        try:
            yield entry
            entry.setdefault("status", "ok")
        except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
            entry.update(status="failed", why=f"{type(error).__name__}: {str(error)[:500]}",
                         traceback=traceback.format_exc().splitlines()[-12:])  # fmt: skip
        assert entry["status"] in STATUSES and (entry["status"] == "ok" or entry.get("why")), entry
        if entry["status"] != "ok":
            log(f"acceptance: {name} {entry['status']}: {entry['why']}")
        entry["seconds"] = round(time.perf_counter() - started, 1)
        self.doc["sections"][name] = entry
        self.write()

    def skip(self, name: str, why: str) -> None:
        log(f"acceptance: {name} skipped: {why}")
        self.doc["sections"][name] = {"status": "skipped", "why": why}
        self.write()

    def write(self) -> None:
        self.doc["seconds"] = round(time.perf_counter() - self.started, 1)
        self.doc["ray_imported"] = "ray" in sys.modules  # the device has no Ray: nothing here may need it
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--mtsamples", type=Path, default=None, help="mtsamples.parquet (`make device-files` copies it to .gpu/)"
    )
    ap.add_argument("--json", type=Path, default=None, help="where the JSON goes, e.g. $OUT/gpu_acceptance.json")
    ap.add_argument("--figures", type=Path, default=None, help="where map.png and map.html go, e.g. $OUT")
    ap.add_argument("--dry-run", action="store_true", help="tiny checkpoint on CPU, a few notes, a small map: seconds")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="checkpoint and outputs (default: a temporary directory)"
    )
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="copy the tokenizer files of this directory instead of writing them (the vocabulary follows)",
    )
    ap.add_argument(
        "--padded-model",
        type=Path,
        default=PADDED_FILE,
        help=f"the padded model file (default: {PADDED_FILE.relative_to(REPO)}, else git show {PADDED_REVISION})",
    )
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting sections that would not fit in this")
    ap.add_argument("--notes", type=int, default=None, help="embed only the first N MTSamples rows (default: all)")
    ap.add_argument(
        "--batch-tokens", type=int, default=None, help="default: embednv's DEFAULT_BATCH_TOKENS for the device"
    )
    ap.add_argument("--map-points", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()  # fmt: skip
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := sorted(set(only) - set(SECTIONS)):
        ap.error(f"unknown section(s) {unknown}. Valid: {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("No CUDA device: run with --dry-run on CPU")
    if not args.dry_run and args.mtsamples is None and set(only) & set(MODEL_SECTIONS):
        sys.exit("--mtsamples PATH is needed (`make device-files` copies it to .gpu/)")
    torch.manual_seed(args.seed)
    device = "cpu" if args.dry_run else "cuda"
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    header = {
        "command": " ".join(["python3", "bench/nvembed_device.py", *sys.argv[1:]]), "generated_at": now(), "git_commit": git_commit(),
        "dry_run": args.dry_run, "card": card, "device": device, "python": sys.version.split()[0], "torch": torch.__version__,
        "cuda": torch.version.cuda, "peak_flops": next((v for k, v in PEAK_BF16_FLOPS.items() if k in card), None),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if device == "cuda" else None,
    }  # fmt: skip
    report = Report(args.json, header)
    with tempfile.TemporaryDirectory(prefix="embednv-acceptance-", dir=args.workdir) as tmp:
        run(args, only, Path(tmp), report)
    report.write()
    summary(report.doc)


def run(args, only: list[str], work: Path, report: Report) -> None:
    texts, text_column, source = load_notes(args, work)
    checkpoint, embedder = work / "nvembed", None
    if set(only) & set(MODEL_SECTIONS):
        with report.section("checkpoint") as entry:
            entry.update(build_checkpoint(checkpoint, args, texts))
        if report.doc["sections"]["checkpoint"]["status"] != "ok":
            for name in [s for s in only if s in MODEL_SECTIONS]:
                report.skip(name, "the checkpoint was not written")
            only = [s for s in only if s not in MODEL_SECTIONS]
    if "mtsamples" in only:
        with report.section("mtsamples") as entry:
            entry.update(embed_corpus(checkpoint, source, text_column, work / "embeddings", args))
    if set(only) & {"attention", "oom", "cosine"}:
        with report.section("load") as entry:
            embedder = load(checkpoint, args, entry)
    for name, minimum, step in (("attention", 30, attention), ("oom", 30, oom), ("cosine", 45, cosine)):
        if name not in only:
            continue
        if embedder is None:
            report.skip(name, "the model did not load")
        elif report.left(args.budget_s) < minimum:
            report.skip(name, f"{report.left(args.budget_s):.0f} s of --budget-s left; rerun with --only {name}")
        else:
            with report.section(name) as entry:
                entry.update(step(embedder, texts, args))
    del embedder
    _free()
    if "map" in only:
        if report.left(args.budget_s) < 120 and not args.dry_run:
            report.skip("map", f"{report.left(args.budget_s):.0f} s of --budget-s left; rerun with --only map")
        else:
            from bench.device_map import map_section

            with report.section("map") as entry:
                entry.update(map_section(work, args))


def load_notes(args, work: Path) -> tuple[list[str], str, Path]:
    """The notes (texts for the attention, OOM and cosine sections) and the file the pipeline embeds."""
    import pyarrow.parquet as pq

    if args.mtsamples is None:
        from embednv.sample_corpus import write_sample_corpus

        write_sample_corpus(str(work / "notes.parquet"), 24, seed=args.seed)
        return pq.read_table(work / "notes.parquet").column("text").to_pylist(), "text", work / "notes.parquet"
    table = pq.read_table(args.mtsamples, columns=["note_id", "transcription"])
    source = args.mtsamples
    limit = 24 if args.dry_run else args.notes
    if limit is not None and limit < len(table):  # the first rows, as a file of their own
        table, source = table.slice(0, limit), work / "notes.parquet"
        pq.write_table(table, source)
    return [t for t in table.column("transcription").to_pylist() if t and t.strip()], "transcription", source


def build_checkpoint(path: Path, args, texts: list[str]) -> dict:
    from bench.checkpoint import OFFICIAL_CONFIG, TINY_CONFIG, write_random_checkpoint, write_tokenizer

    config = TINY_CONFIG if args.dry_run else OFFICIAL_CONFIG
    if args.tokenizer is not None:
        config = {**config, "text_config": {**config["text_config"], "vocab_size": vocab_size(args.tokenizer)}}
    device = "cpu" if args.dry_run else "cuda"
    written = write_random_checkpoint(
        path, config, shards=4, dtype=torch.bfloat16, device=device, method="randn", seed=args.seed
    )
    started = time.perf_counter()
    if args.tokenizer is not None:
        written["tokenizer"] = copy_tokenizer(args.tokenizer, path)
    else:
        written["tokenizer"] = write_tokenizer(path, config["text_config"]["vocab_size"], corpus=texts)
    written["tokenizer_seconds"] = round(time.perf_counter() - started, 1)
    written["files"] = sorted(p.name for p in path.iterdir())
    return written


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def vocab_size(checkpoint: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(checkpoint / "tokenizer.json")).get_vocab_size(with_added_tokens=True)


def copy_tokenizer(source: Path, path: Path) -> str:
    """The tokenizer files of another checkpoint, byte for byte, as users have them."""
    copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if "tokenizer.json" not in copied:
        raise FileNotFoundError(f"{source} has no tokenizer.json")
    for name in copied:
        shutil.copyfile(source / name, path / name)
    return f"copied from {source}: {', '.join(copied)}"


def embed_corpus(checkpoint: Path, source: Path, text_column: str, out_dir: Path, args) -> dict:
    """The embedding run as users start it, on one device in this process: `run_embed` with the local executor."""
    import pyarrow.parquet as pq

    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed

    gpu = not args.dry_run
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    config = EmbedConfig(inputs=(str(source),), out=str(out_dir), model=str(checkpoint), id_column="note_id",
                         text_column=text_column, device="cpu" if args.dry_run else "cuda", dtype="bfloat16",
                         batch_tokens=args.batch_tokens, executor="local", log_every=30.0)  # fmt: skip
    done = run_embed(config)
    peak = _gib(torch.cuda.max_memory_allocated()) if gpu else None
    _free()
    stages, tokens = done.stage_seconds, done.processed_tokens
    useful = sum(flops(read_config(checkpoint), n) for n in window_lengths(config))
    written = sorted(out_dir.glob("part-*.parquet"))
    back = pq.read_table(written, columns=["embedding"]) if written else None
    vectors = (
        np.stack(back.column("embedding").to_numpy(zero_copy_only=False)) if back is not None and len(back) else None
    )
    total_rows = (
        pq.ParquetFile(args.mtsamples).metadata.num_rows if args.mtsamples and not args.dry_run else done.rows_in
    )
    result = {
        "rows_in_file": done.rows_in, "rows_in_corpus": total_rows, "embedded": done.embedded, "errored": done.errored,
        "window_tokens": tokens, "tokens": done.tokens, "padding_efficiency": round(done.padding_efficiency, 4),
        "seconds_wall": round(done.seconds, 1), "stage_seconds": stages, "seconds_to_load": stages.get("load"),
        "shards_written": len(written), "rows_read_back": 0 if back is None else len(back),
        "dim_read_back": None if vectors is None else int(vectors.shape[1]),
        "max_norm_error": None if vectors is None else float(np.abs(np.linalg.norm(vectors, axis=1) - 1).max()),
        # Rates on the model stage's time (batching, forward, pooling): what a GPU actor sustains
        # while CPU workers read and tokenize ahead of it, as they do under Ray.
        "tokens_per_s": round(tokens / stages["embed"], 1) if stages.get("embed") else None,
        "notes_per_s": round(done.processed / stages["embed"], 2) if stages.get("embed") else None,
        "tokens_per_s_wall": round(tokens / done.seconds, 1) if done.seconds else None,
        "useful_flops": useful, "peak_gpu_gib": peak,
        "mfu": round(useful / stages["embed"] / _peak_flops(), 4) if gpu and _peak_flops() and stages.get("embed") else None,
    }  # fmt: skip
    if total_rows > done.rows_in:
        result.update(status="partial", why=f"the first {done.rows_in:,} of {total_rows:,} MTSamples rows (--notes)")
    return result


def read_config(checkpoint: Path) -> NVEmbedConfig:
    return NVEmbedConfig.from_checkpoint_config(json.loads((checkpoint / "config.json").read_text()))


def window_lengths(config) -> list[int]:
    """The token windows the run embedded, cut again by the pipeline's own read and tokenize stages (for FLOPs)."""
    from embednv.columns import WINDOWS
    from embednv.embed.plan import plan_inputs
    from embednv.embed.read import read_shards
    from embednv.embed.tokenize import tokenize_table
    from embednv.models.registry import resolve_model

    ref = resolve_model(config.model, has_gpu=False)
    plan = plan_inputs(list(config.inputs), config.id_column, config.text_column, config.rows_per_shard)
    lengths: list[int] = []
    for index, file in enumerate(plan.files):
        shards = [s for s in plan.shards if s.file == index]
        for table in read_shards(
            file, shards, config.id_column, config.text_column, plan.duplicates.get(index, frozenset())
        ):
            windows = tokenize_table(table, ref, config.instruction).column(WINDOWS).combine_chunks().flatten()
            lengths += np.diff(windows.offsets.to_numpy()).tolist()
    return lengths


def load(path: Path, args, entry: dict):
    from embednv import Embedder

    _sync()
    started = time.perf_counter()
    embedder = Embedder(
        model=str(path), device="cpu" if args.dry_run else "cuda", dtype="bfloat16", batch_tokens=args.batch_tokens
    )
    _sync()
    entry.update(seconds_to_load=round(time.perf_counter() - started, 1), dim=embedder.dim, batch_tokens=embedder.batch_tokens,
                 max_tokens=embedder.ref.max_tokens, params=sum(p.numel() for p in embedder.encoder.model.parameters()),
                 gpu_allocated_gib=None if args.dry_run else _gib(torch.cuda.memory_allocated()))  # fmt: skip
    return embedder


def attention(embedder, texts: list[str], args) -> dict:
    """Packed (varlen FlashAttention or SDPA per run of equal windows) against the padded forward, same weights."""
    from embednv.embed.batching import plan_batches
    from embednv.models.nvembed import Packed

    padded_module, origin = load_padded_module(args.padded_model)
    if args.dry_run:  # the tiny model's 512-token window would cut every note alike: unequal lengths instead
        texts = [t[: 200 + 60 * i] for i, t in enumerate(texts)]
    windows = [w for note in embedder.tokenizer(texts[:2000]) for w in note.windows]
    lengths = [len(w) for w in windows]
    median = sorted(range(len(lengths)), key=lengths.__getitem__)[len(lengths) // 2]
    batch = next(b for b in plan_batches(lengths, embedder.batch_tokens) if median in b.indices)
    chosen = [windows[i] for i in batch.indices]
    model, device = embedder.encoder.model, embedder.encoder.device
    with torch.device("meta"):
        old = padded_module.NVEmbedModel(padded_module.NVEmbedConfig.from_checkpoint_config(_raw_config(embedder)))
    old.load_state_dict(model.state_dict(), assign=True)  # the very same tensors: no second copy of the weights
    old.eval()
    eos = embedder.tokenizer.hf.eos_token_id
    ids, mask, pool = (None if t is None else t.to(device) for t in
                       padded_module.NVEmbedEncoder.from_model(old, pad_id=eos, n_pool_skip=0).collate(chosen))  # fmt: skip
    packed = Packed.from_sequences(chosen, 0).to(device)
    runs = {"padded": lambda: old(ids, mask, pool), "packed": lambda: model(packed, "auto"),
            "packed_sdpa": lambda: model(packed, "sdpa")}  # fmt: skip
    real, width = sum(lengths[i] for i in batch.indices), batch.width
    result = {"padded_model": origin, "windows": len(chosen), "real_tokens": real, "padded_tokens": width * len(chosen),
              "longest": width, "shortest": min(lengths[i] for i in batch.indices)}  # fmt: skip
    outputs, times, peaks = {}, {name: [] for name in runs}, {}
    with torch.inference_mode():
        for name, forward in runs.items():  # warm-up (kernel selection, allocator), and each path's peak memory
            _free()
            base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            outputs[name] = forward().float().cpu().numpy()
            peaks[name] = _gib(torch.cuda.max_memory_allocated() - base) if device.type == "cuda" else None
        for _ in range(1 if args.dry_run else 3):  # alternated, so that a slow spell hits every path
            for name, forward in runs.items():
                _sync()
                started = time.perf_counter()
                forward()
                _sync()
                times[name].append(time.perf_counter() - started)
    for name in runs:
        median_s = float(np.median(times[name]))
        result[name] = {"seconds": [round(t, 4) for t in times[name]], "median_s": round(median_s, 4),
                        "tokens_per_s": round(real / median_s, 1), "peak_gib": peaks[name],
                        "cosine_to_padded_min": round(float(np.sum(outputs[name] * outputs["padded"], axis=1).min()), 6)}  # fmt: skip
    result["kernel_auto"] = "flash" if device.type == "cuda" and _flash_available() else "sdpa"
    result["speedup_packed_vs_padded"] = round(result["padded"]["median_s"] / result["packed"]["median_s"], 2)
    return result


def load_padded_module(path: Path):
    """The padded model's module, from `path`, else from git at PADDED_REVISION; under its own name."""
    if path.is_file():
        source, origin = path.read_text(), str(path)
    else:
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{PADDED_REVISION}:embednv/models/nvembed.py"],
                               capture_output=True, text=True)  # fmt: skip
        if shown.returncode != 0:
            raise FileNotFoundError(f"no {path} and no git history here: run `make device-files` and carry .gpu")
        source, origin = shown.stdout, f"git {PADDED_REVISION}"
    spec = importlib.util.spec_from_loader("nvembed_padded", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, origin, "exec"), module.__dict__)
    return module, origin


def _raw_config(embedder) -> dict:
    return json.loads((Path(embedder.ref.path) / "config.json").read_text())


def _flash_available() -> bool:
    from embednv.models.nvembed import _flash_varlen

    return _flash_varlen() is not None


def oom(embedder, texts: list[str], args) -> dict:
    """A long note whose batch of windows cannot fit under a memory cap is still embedded, by halving."""
    from embednv.embed.batching import plan_batches
    from embednv.embed.tokenize import NoteTokenizer
    from embednv.embed.worker import embed_notes
    from embednv.models.registry import prompt_suffix

    hf = embedder.tokenizer.hf
    target, window = (2_000, 128) if args.dry_run else (32_000, OOM_WINDOW)
    parts, n_tokens = [], 0
    for text in texts * 50:  # notes joined until the note is `target` tokens long
        parts.append(text)
        n_tokens += len(hf(text, add_special_tokens=False)["input_ids"])
        if n_tokens >= target:
            break
    tokenizer = NoteTokenizer(hf, window, prefix=embedder.instruction, suffix=prompt_suffix(embedder.ref, hf))
    note = tokenizer(["\n\n".join(parts)])[0]
    lengths = [len(w) for w in note.windows]
    batches = [len(b.indices) for b in plan_batches(lengths, embedder.batch_tokens)]
    encoder = embedder.encoder
    free = embed_notes(encoder.embed, embedder.dim, [note.windows], embedder.batch_tokens)
    result = {"note_tokens": note.n_tokens, "window": window, "windows": len(note.windows), "batches": batches,
              "uncapped_oom_splits": free.oom_splits}  # fmt: skip
    if args.dry_run:  # CPUs have no allocator cap: a stand-in error on batches of more than two windows

        def capped_embed(batch):
            if len(batch) > 2:
                raise RuntimeError("out of memory (simulated in --dry-run)")
            return encoder.embed(batch)

        capped = embed_notes(capped_embed, embedder.dim, [note.windows], embedder.batch_tokens)
        result["cap"] = "simulated: batches of more than 2 windows fail"
    else:
        total = torch.cuda.get_device_properties(0).total_memory
        _free()
        base = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        encoder.embed([note.windows[0]])  # one window's working memory, measured
        one = torch.cuda.max_memory_reserved() - base
        _free()
        cap = base + 2.5 * one  # room for two windows at a time, not for the whole batch
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
        try:
            capped = embed_notes(encoder.embed, embedder.dim, [note.windows], embedder.batch_tokens)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
            _free()
        result["cap"] = {"reserved_before_gib": _gib(base), "one_window_gib": _gib(one), "cap_gib": _gib(cap),
                         "fraction": round(cap / total, 4)}  # fmt: skip
    vector = capped.vectors[0]
    result.update(oom_splits=capped.oom_splits, failures=capped.failures, embedded=not capped.failures,
                  norm=round(float(np.linalg.norm(vector)), 6),
                  cosine_to_uncapped=round(float(np.dot(vector, free.vectors[0])), 6))  # fmt: skip
    result["goal_met"] = bool(
        result["embedded"] and capped.oom_splits > 0 and result["cosine_to_uncapped"] >= COSINE_GOAL
    )
    if not result["goal_met"]:
        result.update(status="failed", why=f"goal missed: {capped.oom_splits} splits, embedded {result['embedded']}, "
                                           f"cosine to the uncapped vector {result['cosine_to_uncapped']}")  # fmt: skip
    return result


def cosine(embedder, texts: list[str], args) -> dict:
    """bfloat16 (the default on GPU) against float32: the same weights, upcast in memory, on the same windows."""
    import copy

    from embednv.embed.worker import embed_notes
    from embednv.models.nvembed import NVEmbedEncoder

    notes = [n.windows for n in embedder.tokenizer(texts[: 8 if args.dry_run else 50])]
    low = embed_notes(embedder.encoder.embed, embedder.dim, notes, embedder.batch_tokens).vectors
    high_model = copy.deepcopy(embedder.encoder.model).float()
    high_encoder = NVEmbedEncoder.from_model(high_model, embedder.encoder.tokenizer)
    high = embed_notes(high_encoder.embed, embedder.dim, notes, embedder.batch_tokens).vectors
    del high_model, high_encoder
    _free()
    cos = np.sum(low.astype(np.float64) * high, axis=1)
    result = {"notes": len(notes), "min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6),
              "goal": COSINE_GOAL, "goal_met": bool(cos.min() >= COSINE_GOAL)}  # fmt: skip
    if not result["goal_met"] and not args.dry_run:  # a tiny random model is no test of bf16 numerics
        result.update(status="failed", why=f"goal missed: min cosine {result['min_cosine']} < {COSINE_GOAL}")
    return result


def summary(doc: dict) -> None:
    """A few lines on stdout for whoever watches the run; the JSON has everything."""
    print(f"\n{doc['card']}, torch {doc['torch']}, {doc['seconds']:.0f} s")
    for name, s in doc["sections"].items():
        figures = {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool)) and k not in ("traceback",)}
        print(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in list(figures.items())[:14]))


def _peak_flops() -> float | None:
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in card), None)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _gib(n: float) -> float:
    return round(n / 2**30, 2)


if __name__ == "__main__":
    main()
