"""GPU acceptance of the shipped code: full-size NV-Embed-v2 on one GPU, one command, one JSON.

    PYTHONUNBUFFERED=1 python3 bench/nvembed_device.py --mtsamples .gpu/mtsamples.parquet --json $OUT/gpu_acceptance.json
    python3 bench/nvembed_device.py --dry-run --json /tmp/acceptance.json   # tiny checkpoint on CPU, seconds (make test)

Needs torch, transformers, tokenizers, safetensors and pyarrow; not Ray, not cuML. Nothing here
re-implements embednv: every section runs the package's own code, in this process.

1. checkpoint: a random NV-Embed-v2 in the official layout (bf16, 4 safetensors shards + index,
   the official config.json; `bench/checkpoint.py`, shared with `make check-fullsize`), weights
   drawn on the GPU; the tokenizer is Mistral-7B's vocabulary when `mistral_common` is importable,
   else the test fixture's BPE trained on the MTSamples notes (the JSON says which), or the files
   of `--tokenizer DIR` (e.g. NV-Embed-v2's own), whose vocabulary size the model then takes.
2. load: `embednv.Embedder` on it (the shipped loader, bfloat16).
3. mtsamples: every note (`transcription`, id `note_id`) through the pipeline's stages minus Ray:
   `plan_inputs`, `read_shards` (null texts become error rows), `tokenize_table` (the Embedder's
   tokenizer windows), `EmbedWorker` (`embed_notes`: plan_batches, OOM splitting, chunk pooling)
   and `ShardAssembler` writing Parquet shards through `OutputDir`; then the shards are read back.
   Reports tokens/s, notes/s, MFU, peak GPU memory and padding efficiency.
4. cosine: bfloat16 against float32 (the same weights, upcast by the loader) on 50 notes.
5. oom: a ~32k-token note in 4,096-token windows, embedded once freely, then again with
   `torch.cuda.set_per_process_memory_fraction` capped so that its batch of windows cannot fit:
   the batch is halved until it does, and the note is still embedded (split count reported).
6. map: `embednv.mapping` on 100k synthetic 4096-d unit vectors: cuML when importable, else the
   CPU path (and the JSON says so); without scikit-learn/openTSNE only the PCA runs.

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
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.common import git_commit, log, now  # noqa: E402
from embednv.models.nvembed import NVEmbedConfig  # noqa: E402

PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}
SECTIONS = ("mtsamples", "cosine", "oom", "map")
COSINE_GOAL = 0.999
OOM_WINDOW = 4096  # tokens per window for the long note: ~8 windows, one batch under the default budget


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
    """The one JSON document: each section's figures, or why it failed or was skipped."""

    def __init__(self, path: Path | None, header: dict):
        self.path, self.doc, self.started = path, {**header, "sections": {}}, time.perf_counter()

    def left(self, budget_s: float) -> float:
        return budget_s - (time.perf_counter() - self.started)

    @contextmanager
    def section(self, name: str):
        """Run a section; an exception is recorded (type, message, traceback tail) and the next runs."""
        log(f"acceptance: {name}")
        started = time.perf_counter()
        entry: dict = {}
        try:
            yield entry
            entry.setdefault("status", "ok")
        except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
            entry.update(status="failed", error=f"{type(error).__name__}: {str(error)[:500]}",
                         traceback=traceback.format_exc().splitlines()[-12:])  # fmt: skip
            log(f"acceptance: {name} failed: {entry['error']}")
        entry["seconds"] = round(time.perf_counter() - started, 1)
        self.doc["sections"][name] = entry
        self.write()

    def skip(self, name: str, why: str) -> None:
        log(f"acceptance: {name} skipped: {why}")
        self.doc["sections"][name] = {"status": "skipped", "why": why}
        self.write()

    def write(self) -> None:
        self.doc["seconds"] = round(time.perf_counter() - self.started, 1)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--mtsamples",
        type=Path,
        default=None,
        help="mtsamples.parquet (copied into the repo: ../shared does not travel)",
    )
    ap.add_argument("--json", type=Path, default=None, help="where the JSON goes, e.g. $OUT/gpu_acceptance.json")
    ap.add_argument("--dry-run", action="store_true", help="tiny checkpoint on CPU, a few notes, a small map: seconds")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="checkpoint and outputs (default: a temporary directory)"
    )
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="copy the tokenizer files of this checkpoint directory instead of writing them (the vocabulary follows)",
    )
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--budget-s", type=float, default=560.0, help="stop starting sections that would not fit in this")
    ap.add_argument("--embed-seconds", type=float, default=300.0, help="cap on the MTSamples section's embedding")
    ap.add_argument(
        "--batch-tokens", type=int, default=None, help="default: embednv's DEFAULT_BATCH_TOKENS for the device"
    )
    ap.add_argument("--map-points", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := sorted(set(only) - set(SECTIONS)):
        ap.error(f"unknown section(s) {unknown}. Valid: {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("No CUDA device: run with --dry-run on CPU")
    if not args.dry_run and args.mtsamples is None and set(only) & {"mtsamples", "cosine", "oom"}:
        sys.exit("--mtsamples PATH is needed (copy ../shared/data/mtsamples.parquet into the repo, e.g. .gpu/)")
    torch.manual_seed(args.seed)
    device = "cpu" if args.dry_run else "cuda"
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    header = {
        "command": " ".join(["python3", "bench/nvembed_device.py", *sys.argv[1:]]), "generated_at": now(), "git_commit": git_commit(),
        "dry_run": args.dry_run, "card": card, "device": device, "torch": torch.__version__,
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
    embedder = None
    if set(only) & {"mtsamples", "cosine", "oom"}:
        with report.section("checkpoint") as entry:
            entry.update(build_checkpoint(work / "nvembed", args, texts))
        with report.section("load") as entry:
            embedder = load(work / "nvembed", args, entry)
    if embedder is None and set(only) & {"mtsamples", "cosine", "oom"}:
        for name in ("mtsamples", "cosine", "oom"):
            if name in only:
                report.skip(name, "the checkpoint did not build or load")
        only = [s for s in only if s == "map"]
    if "mtsamples" in only:
        with report.section("mtsamples") as entry:
            seconds = min(args.embed_seconds, max(30.0, report.left(args.budget_s) - 200))
            entry.update(embed_corpus(embedder, source, text_column, work / "embeddings", seconds, args.dry_run))
    for name, minimum, step in (("cosine", 45, cosine), ("oom", 30, oom)):
        if name in only:
            if report.left(args.budget_s) < minimum:
                report.skip(name, f"{report.left(args.budget_s):.0f} s of --budget-s left; rerun with --only {name}")
                continue
            with report.section(name) as entry:
                entry.update(step(embedder, texts, args))
    del embedder
    _free()
    if "map" in only:
        if report.left(args.budget_s) < 120 and not args.dry_run:
            report.skip("map", f"{report.left(args.budget_s):.0f} s of --budget-s left; rerun with --only map")
        else:
            with report.section("map") as entry:
                entry.update(run_map_stage(work, args))


def load_notes(args, work: Path) -> tuple[list[str], str, Path]:
    """The notes (texts for the tokenizer, the cosine and the long note) and the file to embed."""
    import pyarrow.parquet as pq

    if args.mtsamples is not None:
        table = pq.read_table(args.mtsamples, columns=["note_id", "transcription"])
        if args.dry_run:  # a slice of the real notes, as a file of its own
            table = table.slice(0, 24)
            pq.write_table(table, work / "notes.parquet")
            return (
                [t for t in table.column("transcription").to_pylist() if t and t.strip()],
                "transcription",
                work / "notes.parquet",
            )
        return (
            [t for t in table.column("transcription").to_pylist() if t and t.strip()],
            "transcription",
            args.mtsamples,
        )
    from embednv.sample_corpus import write_sample_corpus

    write_sample_corpus(str(work / "notes.parquet"), 24, seed=args.seed)
    return pq.read_table(work / "notes.parquet").column("text").to_pylist(), "text", work / "notes.parquet"


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


def load(path: Path, args, entry: dict):
    from embednv import Embedder

    _sync()
    started = time.perf_counter()
    embedder = Embedder(
        model=str(path), device="cpu" if args.dry_run else "cuda", dtype="bfloat16", batch_tokens=args.batch_tokens
    )
    # The tiny checkpoint's window is its max_position_embeddings (512); the real one's is 32,768.
    _sync()
    entry.update(seconds_to_load=round(time.perf_counter() - started, 1), dim=embedder.dim, batch_tokens=embedder.batch_tokens,
                 max_tokens=embedder.ref.max_tokens, params=sum(p.numel() for p in embedder.encoder.model.parameters()),
                 gpu_allocated_gib=_gib(torch.cuda.memory_allocated())
                 if torch.cuda.is_available() and not args.dry_run else None)  # fmt: skip
    return embedder


def embed_corpus(embedder, source: Path, text_column: str, out_dir: Path, seconds: float, dry_run: bool) -> dict:
    """The pipeline's stages in this process, in its order and window sizes, without Ray."""
    import pyarrow.parquet as pq

    from embednv.columns import WINDOWS
    from embednv.directories import OutputDir
    from embednv.embed.assemble import ShardAssembler
    from embednv.embed.config import EmbedConfig
    from embednv.embed.plan import plan_inputs
    from embednv.embed.read import read_shards
    from embednv.embed.tokenize import tokenize_table
    from embednv.embed.worker import EmbedWorker

    defaults = EmbedConfig(inputs=(), out="")
    plan = plan_inputs([str(source)], "note_id", text_column, defaults.rows_per_shard)
    out = OutputDir(str(out_dir))
    assembler = ShardAssembler(plan, out, "note_id", embedder.dim)
    worker = EmbedWorker.from_encoder(embedder.encoder, embedder.batch_tokens)
    cfg = embedder.encoder.model.cfg
    gpu = torch.cuda.is_available() and not dry_run
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    tokenize_s = embed_s = write_s = useful = 0.0
    rows = windows = 0
    complete = True
    started = time.perf_counter()
    for file_index, file in enumerate(plan.files):
        shards = [s for s in plan.shards if s.file == file_index]
        for table in read_shards(file, shards, "note_id", text_column, plan.duplicates.get(file_index, frozenset())):
            for start in range(0, len(table), defaults.window_rows):
                if embed_s > seconds:
                    complete = False
                    break
                t0 = time.perf_counter()
                tokenized = tokenize_table(table.slice(start, defaults.window_rows), embedder.ref, embedder.instruction)
                lengths = np.diff(tokenized.column(WINDOWS).combine_chunks().flatten().offsets.to_numpy())
                t1 = time.perf_counter()
                block = worker(tokenized)  # returns numpy: the GPU work is finished
                t2 = time.perf_counter()
                assembler.add(block)
                tokenize_s, embed_s, write_s = (
                    tokenize_s + t1 - t0,
                    embed_s + t2 - t1,
                    write_s + time.perf_counter() - t2,
                )
                useful += sum(flops(cfg, int(n)) for n in lengths)
                rows, windows = rows + len(tokenized), windows + len(lengths)
    wall = time.perf_counter() - started
    stats = {
        k: sum(s[k] for s in assembler.written)
        for k in ("rows", "embedded", "errored", "tokens", "window_tokens", "padded_tokens")
    }
    written = sorted(out_dir.glob("part-*.parquet"))
    back = pq.read_table(written, columns=["embedding"]) if written else None
    vectors = (
        np.stack(back.column("embedding").to_numpy(zero_copy_only=False))
        if back is not None and len(back)
        else np.zeros((0, 1))
    )
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in (torch.cuda.get_device_name() if gpu else "")), None)
    return {
        "complete": complete and not assembler.incomplete(), "seconds_cap": round(seconds),
        "rows_in_file": plan.n_rows, "rows_processed": rows, "windows": windows, **stats,
        "shards_written": len(written), "rows_read_back": 0 if back is None else len(back),
        "dim_read_back": int(vectors.shape[1]) if len(vectors) else None,
        "max_norm_error": float(np.abs(np.linalg.norm(vectors, axis=1) - 1).max()) if len(vectors) else None,
        "seconds_wall": round(wall, 1), "seconds_tokenize": round(tokenize_s, 1), "seconds_embed": round(embed_s, 1),
        "seconds_write": round(write_s, 1),
        # Rates on the model stage's time (the actor's __call__: collation, GPU, pooling): what a
        # GPU actor sustains while CPU workers tokenize ahead of it, as they do under Ray.
        "tokens_per_s": round(stats["window_tokens"] / embed_s, 1) if embed_s else None,
        "notes_per_s": round(stats["embedded"] / embed_s, 2) if embed_s else None,
        "tokens_per_s_wall": round(stats["window_tokens"] / wall, 1) if wall else None,
        "padding_efficiency": round(stats["window_tokens"] / stats["padded_tokens"], 4) if stats["padded_tokens"] else None,
        "mfu": round(useful / embed_s / peak, 4) if peak and embed_s else None,
        "peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()) if gpu else None,
    }  # fmt: skip


def cosine(embedder, texts: list[str], args) -> dict:
    """bfloat16 (the default on GPU) against float32 from the same checkpoint, upcast on load."""
    from embednv import Embedder

    sample = texts[:50]
    low = embedder.encode(sample)
    high_embedder = Embedder(
        model=embedder.ref.path, device=embedder.device, dtype="float32", batch_tokens=embedder.batch_tokens
    )
    high = high_embedder.encode(sample)
    del high_embedder
    _free()
    cos = np.sum(low.astype(np.float64) * high, axis=1)
    return {"notes": len(sample), "min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6),
            "goal": COSINE_GOAL, "goal_met": bool(cos.min() >= COSINE_GOAL)}  # fmt: skip


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
        result["cap"] = {
            "reserved_before_gib": _gib(base),
            "one_window_gib": _gib(one),
            "cap_gib": _gib(cap),
            "fraction": round(cap / total, 4),
        }
    vector = capped.vectors[0]
    result.update(oom_splits=capped.oom_splits, failures=capped.failures, embedded=not capped.failures,
                  norm=round(float(np.linalg.norm(vector)), 6),
                  cosine_to_uncapped=round(float(np.dot(vector, free.vectors[0])), 6))  # fmt: skip
    result["goal_met"] = bool(
        result["embedded"] and capped.oom_splits > 0 and result["cosine_to_uncapped"] >= COSINE_GOAL
    )
    return result


def run_map_stage(work: Path, args) -> dict:
    """`embednv.mapping` on synthetic unit vectors, with the best backend present here."""
    from bench.bench_map import write_synthetic
    from embednv.mapping.backends import cuml_status
    from embednv.mapping.tsne_params import TSNEParams

    n, dim = (300, 64) if args.dry_run else (args.map_points, 4096)
    # One perplexity: the wide second scale is CPU-only and grows ~n^2 (docs/map.md). The dry run
    # only proves the path: fewer iterations, as the map tests use.
    tsne = TSNEParams(multiscale=False, **({"n_iter": 150} if args.dry_run else {}))
    emb = work / "map-embeddings"
    started = time.perf_counter()
    write_synthetic(emb, n, dim, args.seed)
    result = {"points": n, "dim": dim, "seconds_write_vectors": round(time.perf_counter() - started, 1)}
    has_cuml, why = cuml_status()
    missing = [m for m in ("sklearn", "openTSNE", "matplotlib", "plotly") if importlib.util.find_spec(m) is None]
    result["cuml"] = why
    result["missing_modules"] = missing
    if not missing:
        from embednv.mapping.run import MapConfig, run_map

        done = run_map(MapConfig(emb_dir=emb, out_dir=work / "map", tsne=tsne, seed=args.seed))
        result.update(backend=done.backend, k=done.k, timings_s={k: round(v, 1) for k, v in done.timings.items()},
                      knn_preservation_10=done.metrics.get("knn_preservation_10"), silhouette=done.metrics.get("silhouette"))  # fmt: skip
        result["note"] = "cuML (GPU)" if done.backend == "cuml" else f"CPU path: {why}"
        return result
    # A box without the CPU map libraries: the phases that can run, each with the backend present.
    from embednv.mapping.backends import get_backend
    from embednv.mapping.clusters import fit_clusters
    from embednv.mapping.pca import auto_batch_size, reduce
    from embednv.mapping.reader import open_shards
    from embednv.mapping.tsne import embed

    backend = get_backend("auto")
    result.update(
        backend=backend.name,
        timings_s={},
        note=f"{backend.name}: {why}; missing {', '.join(missing)}: phases run one by one",
    )
    x = None
    for name in ("pca", "kmeans", "tsne"):
        started = time.perf_counter()
        try:
            if name == "pca":
                x = reduce(open_shards(emb), 50, auto_batch_size(dim), backend).x
            elif name == "kmeans":
                result["k"] = fit_clusters(x, "auto", backend, args.seed).k
            else:
                embed(x, tsne, backend, args.seed)
            result["timings_s"][name] = round(time.perf_counter() - started, 1)
        except Exception as error:  # noqa: BLE001 - a missing library: say which phase and why
            result["timings_s"][name] = f"not run: {type(error).__name__}: {str(error)[:200]}"
            if name == "pca":
                break
    return result


def summary(doc: dict) -> None:
    """A few lines on stdout for whoever watches the run; the JSON has everything."""
    print(f"\n{doc['card']}, torch {doc['torch']}, {doc['seconds']:.0f} s")
    for name, s in doc["sections"].items():
        figures = {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool)) and k not in ("traceback",)}
        print(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in list(figures.items())[:14]))


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
