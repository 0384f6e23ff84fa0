"""NV-Embed-v2 throughput on one GPU: token-budget batching vs naive batches of 32.

Builds the full-size architecture from the official config values with random bf16 weights made
on the GPU (meta init, then materialised there: no download, no checkpoint), and runs synthetic
clinical-note token sequences through the encoder's real embed path. Prints one JSON line and a
markdown table: card, tokens/s, notes/s, peak GPU memory, padding efficiency, MFU.

    python3 bench/nvembed_device.py                 # on the GPU box, about 5 minutes
    python3 bench/nvembed_device.py --smoke         # tiny config on CPU, seconds (tests run this)

Workload: lognormal note lengths (median 600 tokens, sigma 0.9: p99 about 4,900; capped at the
model window), BOS first and EOS last, arrival order random.

FLOPs per sequence of T real tokens (matmul = 2 FLOPs per multiply-add), as counted by `flops`:
    dense     = 2 * P * T, with P the weights every token is multiplied by: the 32 layers'
                q/k/v/o + gate/up/down projections and the head's to_q, to_out, GEGLU net.0/net.2
                (embedding lookup, norms and the per-batch latent to_kv projection excluded);
    attention = 4 * L * d_attn * T^2 (QK^T and AV in each of L layers, d_attn = heads * head_dim)
              + 4 * T * n_latents * d_inner (the head's cross-attention to 512 latents).
MFU = those FLOPs on real tokens / seconds / peak, the peak being the dense bf16 tensor-core figure
(H100 SXM and H200: 989 TFLOP/s; H100 PCIe: 756). Padding therefore lowers MFU, as it should.

SDPA backends on CUDA (bf16): the backbone's key-padding mask rules out flash attention, so padded
batches take the memory-efficient kernel (O(T) memory, somewhat slower); a batch with no padding
passes no mask and may take flash. Sorting by length within a window keeps padding, and thus both
the waste and the masked share, small; fully padding-free (varlen) attention is not used.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from embednv.models.nvembed import NVEmbedConfig, NVEmbedEncoder, NVEmbedModel  # noqa: E402

# config.json of nvidia/NV-Embed-v2 as shipped: the latent-attention part gives only its type.
OFFICIAL_CONFIG = {
    "model_type": "nvembed",
    "text_config": {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 32768, "hidden_act": "silu", "sliding_window": 4096,
    },
    "latent_attention_config": {"model_type": "latent_attention"},
    "padding_side": "right", "is_mask_instruction": True, "add_eos": True, "add_pad_token": True,
}  # fmt: skip
SMOKE_CONFIG = {
    **OFFICIAL_CONFIG,
    "text_config": {
        "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    },
    "latent_attention_config": {"num_latents_value": 16, "num_cross_heads": 2, "cross_dim_head": 24,
                                "latent_dim": 64, "hidden_dim": 64},
}  # fmt: skip
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}
BOS, EOS = 1, 2


def random_model(cfg: NVEmbedConfig, device: torch.device, dtype: torch.dtype, seed: int) -> NVEmbedModel:
    """Meta init, then allocate on `device` and fill in place: 15 GiB of weights in seconds, no host copy."""
    with torch.device("meta"):
        model = NVEmbedModel(cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "norm" in name:  # RMSNorm / LayerNorm weights
                p.fill_(1.0)
            elif name.endswith("latents") or "embed_tokens" in name:
                p.normal_(0.0, 1.0, generator=gen)
            else:  # variance-preserving, so activations stay finite through 32 random layers
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=gen)
    return model.eval().requires_grad_(False)


def note_lengths(n: int, median: float, sigma: float, max_tokens: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), 8, max_tokens).astype(np.int64)


def make_sequences(lengths: np.ndarray, vocab: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed + 1)
    return [[BOS, *rng.integers(3, vocab, int(n) - 2).tolist(), EOS] for n in lengths]


def token_budget_batches(lengths: np.ndarray, budget: int, window: int, seed: int) -> list[list[int]]:
    """Sort each window of `window` arrivals by length (longest first), then fill batches while
    batch size * longest length (padded tokens) stays within `budget`. Batches of a window run in
    random order, so a run cut short by time sees a fair mix of lengths, not only the longest."""
    rng, batches = np.random.default_rng(seed), []
    for start in range(0, len(lengths), window):
        order = start + np.argsort(-lengths[start : start + window], kind="stable")
        window_batches, batch = [], []
        for i in order.tolist():
            if batch and (len(batch) + 1) * lengths[batch[0]] > budget:
                window_batches.append(batch)
                batch = []
            batch.append(i)
        window_batches.append(batch)
        rng.shuffle(window_batches)
        batches += window_batches
    return batches


def naive_batches(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(s + size, n))) for s in range(0, n, size)]


def flops(cfg: NVEmbedConfig, n_tokens: int) -> float:
    """Useful FLOPs for one sequence of `n_tokens` (formula in the module docstring)."""
    t, lat = cfg.text, cfg.latent
    d, d_attn, d_kv = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    inner = lat.num_cross_heads * lat.cross_dim_head
    backbone = t.num_hidden_layers * (2 * d * d_attn + 2 * d * d_kv + 3 * d * t.intermediate_size)
    head = 2 * d * inner + 12 * d * d  # to_q + to_out + GEGLU (d -> 8d, 4d -> d)
    attention = 4 * t.num_hidden_layers * d_attn * n_tokens**2 + 4 * n_tokens * lat.num_latents_value * inner
    return 2 * (backbone + head) * n_tokens + attention


def embed_splitting(encoder: NVEmbedEncoder, seqs: list[list[int]], stats: dict) -> None:
    """What the pipeline does on OOM: halve the batch and retry."""
    try:
        encoder.embed(seqs)
        stats["padded_tokens"] += len(seqs) * max(map(len, seqs))
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError since 2.5; this name works on all
        if len(seqs) == 1:
            raise
        stats["oom_splits"] += 1
        torch.cuda.empty_cache()
        embed_splitting(encoder, seqs[: len(seqs) // 2], stats)
        embed_splitting(encoder, seqs[len(seqs) // 2 :], stats)


def run(name: str, batches, sequences, encoder, cfg, seconds: float, device, peak: float | None) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stats = {"padded_tokens": 0, "oom_splits": 0}
    notes = tokens = 0
    useful = 0.0
    start = time.perf_counter()
    for batch in batches:  # embed() returns numpy, so each batch is finished when it returns
        seqs = [sequences[i] for i in batch]
        embed_splitting(encoder, seqs, stats)
        notes, tokens = notes + len(seqs), tokens + sum(map(len, seqs))
        useful += sum(flops(cfg, len(s)) for s in seqs)
        if time.perf_counter() - start > seconds:
            break
    elapsed = time.perf_counter() - start
    print(f"{name}: {notes} notes, {tokens / elapsed:,.0f} tokens/s", file=sys.stderr, flush=True)  # progress
    return {
        "strategy": name, "notes": notes, "tokens": tokens, "seconds": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1), "notes_per_s": round(notes / elapsed, 2),
        "padding_efficiency": round(tokens / stats["padded_tokens"], 4), "oom_splits": stats["oom_splits"],
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "mfu": round(useful / elapsed / peak, 4) if peak else None,
    }  # fmt: skip


def sdpa_probe(device: torch.device, dtype: torch.dtype) -> dict:
    """The first SDPA kernel that takes each shape the model uses (MATH: the O(T^2)-memory fallback)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cases = {  # name: (query heads, kv heads, head dim, key-padding mask)
        "backbone_padded": (32, 32, 128, True),  # KV heads repeated, as the model does
        "backbone_unpadded": (32, 32, 128, False),
        "backbone_padded_enable_gqa": (32, 8, 128, True),  # the alternative the model avoids
        "latent_head": (8, 8, 4096, False),
    }
    result = {}
    for case, (n_q, n_kv, hd, masked) in cases.items():
        q = torch.randn(2, n_q, 256, hd, device=device, dtype=dtype)
        kv = torch.randn(2, n_kv, 256, hd, device=device, dtype=dtype)
        mask = (torch.arange(256, device=device) < torch.tensor([[256], [200]], device=device))[:, None, None, :]
        result[case] = "MATH"
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(
                        q, kv, kv, attn_mask=mask if masked else None, enable_gqa=n_q != n_kv
                    )
                result[case] = backend.name
                break
            except RuntimeError:
                continue
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny config on CPU in float32, a few seconds")
    ap.add_argument("--notes", type=int, default=20000, help="workload size; each run stops after --seconds")
    ap.add_argument("--seconds", type=float, default=75.0, help="time per strategy")
    ap.add_argument("--budgets", default="16384,65536", help="token budgets (padded tokens per batch) to run")
    ap.add_argument("--window", type=int, default=1024, help="notes sorted together by length")
    ap.add_argument("--median", type=float, default=600.0)
    ap.add_argument("--sigma", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.smoke:
        raw, device, dtype = SMOKE_CONFIG, torch.device("cpu"), torch.float32
        args.notes, args.seconds, args.budgets, args.window, args.median = 96, 1.0, "1024", 96, 40.0
    else:
        if not torch.cuda.is_available():
            sys.exit("No CUDA device: run with --smoke on CPU")
        raw, device, dtype = OFFICIAL_CONFIG, torch.device("cuda"), torch.bfloat16
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in card), None) if device.type == "cuda" else None
    cfg = NVEmbedConfig.from_checkpoint_config(raw)

    t0 = time.perf_counter()
    model = random_model(cfg, device, dtype, args.seed)
    encoder = NVEmbedEncoder.from_model(model, pad_id=EOS)
    n_params = sum(p.numel() for p in model.parameters())
    build_s = time.perf_counter() - t0
    lengths = note_lengths(args.notes, args.median, args.sigma, encoder.max_tokens, args.seed)
    sequences = make_sequences(lengths, cfg.text.vocab_size, args.seed)
    encoder.embed(sequences[:4])  # warm-up: cuBLAS handles, kernels, allocator
    out = encoder.embed([sequences[0]])
    assert np.isfinite(out).all(), "random weights produced non-finite embeddings"

    runs = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        batches = token_budget_batches(lengths, budget, args.window, args.seed)
        result = run("token-budget", batches, sequences, encoder, cfg, args.seconds, device, peak)
        runs.append({**result, "budget": budget})
    runs.append(run("naive-32", naive_batches(len(lengths), 32), sequences, encoder, cfg, args.seconds, device, peak))

    result = {
        "card": card, "device": str(device), "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
        "params": n_params, "build_seconds": round(build_s, 1), "peak_flops": peak,
        "workload": {"notes": args.notes, "median": args.median, "sigma": args.sigma,
                     "max_tokens": encoder.max_tokens, "mean_tokens": round(float(lengths.mean()), 1),
                     "p99_tokens": int(np.percentile(lengths, 99))},
        "sdpa": sdpa_probe(device, dtype),  # on CPU too, so --smoke exercises it before the GPU run
        "runs": runs,
    }  # fmt: skip
    print(json.dumps(result))
    print(f"\n{card}, {dtype}, {n_params / 1e6:,.1f}M params, SDPA: {result['sdpa']}\n")
    print("| strategy | batch | notes | tokens/s | notes/s | padding eff. | peak GPU GiB | MFU | OOM splits |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        batch = f"{r['budget']:,} tokens" if "budget" in r else "32 notes"
        print(f"| {r['strategy']} | {batch} | {r['notes']} | {r['tokens_per_s']:,.0f} | "
              f"{r['notes_per_s']:.1f} | {r['padding_efficiency']:.1%} | {r['peak_gpu_gib']} | {mfu} | "
              f"{r['oom_splits']} |")  # fmt: skip


if __name__ == "__main__":
    main()
