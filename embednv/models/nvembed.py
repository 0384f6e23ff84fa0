"""NV-Embed-v2, natively: Mistral-7B made bidirectional, then latent-attention pooling.

One readable file, bottom-up: config -> packed batches -> RMSNorm -> rotary -> attention -> MLP ->
layer -> backbone -> latent-attention pooling -> model -> loading -> encoder. Reproduces the official
`modeling_nvembed.py` numerically without ever running code shipped with a checkpoint: no
`trust_remote_code`, no `transformers` model classes (their internals change between releases);
`transformers` is used for the tokenizer only. Import this module lazily: it imports torch.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from embednv.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 32768  # the official encode() max_length and Mistral's max_position_embeddings
MODEL_TYPE = "nvembed"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

TASK_PRESETS: dict[str, str] = {
    "similar-notes": "Given a clinical note, retrieve clinical notes that describe a similar patient presentation",
    "specialty": "Identify the medical specialty that wrote the given clinical note",
    "diagnosis": "Identify the primary diagnosis described in the given clinical note",
    "cohort": "Identify the patient cohort (main conditions, procedures and course of care) of the given clinical note",
}


def build_instruction(task: str | None) -> str:
    """Turn a preset name (see `TASK_PRESETS`) or a free-text task into NV-Embed's query prefix.

    NV-Embed-v2 was trained with instructions on the *query* side only: use one when embedding
    queries for retrieval (`similar-notes`), and for clustering/classification-style maps, where
    every note is a "query" (`specialty`, `diagnosis`, `cohort`). Documents or passages that are
    to be retrieved are embedded without any prefix: pass None or "" to get "".
    Returns `"Instruct: {task}\\nQuery: "`; a string already in that form is returned unchanged.
    """
    if not task:
        return ""
    if task.startswith("Instruct: ") and task.endswith("\nQuery: "):
        return task
    if task in TASK_PRESETS:
        return f"Instruct: {TASK_PRESETS[task]}\nQuery: "
    if " " not in task.strip():
        raise ConfigError(f"Unknown task preset {task!r}. Valid: {', '.join(TASK_PRESETS)}, or a free-text sentence")
    return f"Instruct: {task.strip()}\nQuery: "


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MistralConfig:
    """The backbone; field names are the checkpoint's `text_config` keys. Defaults: Mistral-7B-v0.1."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 8  # grouped-query attention: 4 query heads share each KV head
    head_dim: int = 128  # hidden_size // num_attention_heads unless the config says otherwise
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768  # longest input; rotary itself has no table to outgrow


@dataclass(frozen=True)
class LatentAttentionConfig:
    """The pooling head; field names are the checkpoint's. Defaults: the official class defaults,
    which NV-Embed-v2 relies on (its config.json gives only `model_type` for this part)."""

    num_latents_value: int = 512  # learned keys/values the token states attend to
    num_cross_heads: int = 8
    cross_dim_head: int = 4096  # per head: inner width is 8 * 4096 = 32768, as shipped
    latent_dim: int = 4096  # must equal the backbone width (tokens are the queries)
    hidden_dim: int = 4096  # width of the latents (the context); must equal latent_dim
    output_normalize: bool = True  # L2-normalise the pooled vector


@dataclass(frozen=True)
class NVEmbedConfig:
    text: MistralConfig
    latent: LatentAttentionConfig
    is_mask_instruction: bool = True  # instruction tokens are left out of the mean pooling

    @property
    def output_dim(self) -> int:
        return self.latent.latent_dim

    @classmethod
    def from_checkpoint_config(cls, raw: dict[str, Any]) -> NVEmbedConfig:
        """Read a checkpoint's config.json dict; omitted latent-attention fields take official defaults."""
        if raw.get("model_type") != MODEL_TYPE:
            raise ValueError(f"config.json has model_type={raw.get('model_type')!r}, expected {MODEL_TYPE!r}")
        text_raw = raw.get("text_config") or {}
        required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        missing = [k for k in required if k not in text_raw]
        if missing:
            raise ValueError(f"config.json text_config lacks {missing}; cannot size the Mistral backbone")
        if text_raw.get("rope_scaling"):
            raise ValueError(f"rope_scaling={text_raw['rope_scaling']} is not supported (NV-Embed-v2 has none)")
        if text_raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act={text_raw['hidden_act']!r} is not supported, expected 'silu'")
        # head_dim may be absent or null: then it is derived, as in transformers' MistralConfig.
        head_dim = text_raw.get("head_dim") or text_raw["hidden_size"] // text_raw["num_attention_heads"]
        # sliding_window is ignored on purpose: the official model builds a plain padding mask, so
        # every token sees every other token however far apart.
        text = _from_dict(MistralConfig, {**text_raw, "head_dim": head_dim})
        latent = _from_dict(LatentAttentionConfig, raw.get("latent_attention_config") or {})
        if not latent.latent_dim == latent.hidden_dim == text.hidden_size:
            raise ValueError(
                f"latent_dim={latent.latent_dim} and hidden_dim={latent.hidden_dim} must both equal the "
                f"backbone hidden_size={text.hidden_size}"
            )
        if text.num_attention_heads % text.num_key_value_heads:
            raise ValueError(f"{text.num_attention_heads} heads do not split into {text.num_key_value_heads} KV groups")
        if raw.get("padding_side", "right") != "right":
            raise ValueError(f"padding_side={raw['padding_side']!r} is not supported: positions assume right padding")
        return cls(text, latent, bool(raw.get("is_mask_instruction", True)))


def _from_dict(cls, raw: dict[str, Any]):
    """The dataclass from the keys it knows; absent keys keep their (official) defaults."""
    return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


# ----------------------------------------------------------------------------- packed batches


@dataclass(frozen=True)
class Packed:
    """A micro-batch of B windows laid end to end, N tokens in all: no padding anywhere.

    Every per-token step (embedding, norms, projections, MLP, the pooling head) runs on (N, d)
    rows, so no padded token enters a matmul; only attention needs the window boundaries, given
    as cumulative offsets as FlashAttention's varlen kernels take them. The host keeps its own
    copy of the lengths, so that loops and kernel arguments never wait on the device.
    """

    ids: torch.Tensor  # (N,) int64: window after window
    positions: torch.Tensor  # (N,) int64: each token's position in its window, for RoPE
    cu_seqlens: torch.Tensor  # (B+1,) int32: window b is rows cu_seqlens[b]:cu_seqlens[b+1]
    pool_rows: torch.Tensor  # (P,) int64: the rows the mean pools (real tokens past the instruction)
    pool_owner: torch.Tensor  # (P,) int64: the window of each pooled row, ascending
    lengths: tuple[int, ...]  # (B,) on the host
    pool_offsets: tuple[int, ...]  # (B+1,) on the host: window b owns pool_rows[o[b]:o[b+1]]
    runs: tuple[tuple[int, int, int], ...]  # (first row, windows, length) per run of equally long windows

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]], n_pool_skip: int = 0) -> Packed:
        """Token id lists as the tokenizer made them; the first `n_pool_skip` positions of each are not pooled."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        starts = np.cumsum(lengths) - lengths
        positions = np.arange(len(ids)) - np.repeat(starts, lengths)
        return cls._build(ids, positions, lengths, positions >= n_pool_skip)

    @classmethod
    def from_padded(
        cls, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pool_mask: torch.Tensor | None = None
    ) -> Packed:
        """The official model's input: right-padded (B, T) ids, key-padding mask (None: no padding), pool mask."""
        ids = input_ids.cpu().numpy()
        valid = np.ones(ids.shape, bool) if attention_mask is None else attention_mask.bool().cpu().numpy()
        lengths = valid.sum(1)
        positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        assert (valid == (positions < lengths[:, None])).all(), "padding must be on the right, as the official model's"
        pool = valid if pool_mask is None else valid & pool_mask.bool().cpu().numpy()
        return cls._build(ids[valid], positions[valid], lengths, pool[valid])

    @classmethod
    def _build(cls, ids: np.ndarray, positions: np.ndarray, lengths: np.ndarray, pooled: np.ndarray) -> Packed:
        window = np.repeat(np.arange(len(lengths)), lengths)  # (N,) the window of each row
        rows = np.flatnonzero(pooled)
        cu = np.concatenate([[0], np.cumsum(lengths)])
        pool_offsets = np.concatenate([[0], np.cumsum(np.bincount(window[rows], minlength=len(lengths)))])
        runs, b = [], 0
        while b < len(lengths):  # plan_batches sorts windows by length: equal ones are neighbours
            n = 1
            while b + n < len(lengths) and lengths[b + n] == lengths[b]:
                n += 1
            runs.append((int(cu[b]), n, int(lengths[b])))
            b += n
        tensor = torch.from_numpy
        return cls(tensor(ids.astype(np.int64)), tensor(positions.astype(np.int64)), tensor(cu.astype(np.int32)),
                   tensor(rows.astype(np.int64)), tensor(window[rows].astype(np.int64)), tuple(lengths.tolist()),
                   tuple(pool_offsets.tolist()), tuple(runs))  # fmt: skip

    def to(self, device: torch.device) -> Packed:
        moved = {f: getattr(self, f).to(device) for f in ("ids", "positions", "cu_seqlens", "pool_rows", "pool_owner")}
        return replace(self, **moved)

    @property
    def max_len(self) -> int:
        return max(self.lengths)


# ----------------------------------------------------------------------------- backbone


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 and cast back *before* the weight, exactly as Mistral/HF does.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (N, 1, head_dim) for each token's position, angles computed in float32 as in HF."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (N, hd/2)
    angles = torch.cat([angles, angles], dim=-1)[:, None, :]  # (N, 1, hd): HF weights pair dim i with i + hd/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


KERNELS = ("auto", "flash", "sdpa")


@functools.cache
def _flash_varlen():
    """torch's varlen FlashAttention (torch >= 2.10), or None.

    Its flash kernel takes fewer KV heads than query heads and groups them itself, so K and V
    are never copied. From torch 2.12 the wrapper refuses that unless asked with enable_gqa=True;
    2.10 and 2.11 have no such flag and pass the KV heads through as they are.
    """
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    if "enable_gqa" in inspect.signature(varlen_attn).parameters:
        return functools.partial(varlen_attn, enable_gqa=True)
    return varlen_attn


def pick_kernel(kernel: str, x: torch.Tensor) -> str:
    """'auto': 'flash' on CUDA in half precision when torch has varlen FlashAttention, else 'sdpa'."""
    if kernel not in KERNELS:
        raise ConfigError(f"Invalid attention kernel: {kernel!r}. Valid: {', '.join(KERNELS)}")
    if kernel != "auto":
        return kernel
    half = x.dtype in (torch.float16, torch.bfloat16)
    return "flash" if x.is_cuda and half and _flash_varlen() is not None else "sdpa"


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: Packed, kernel: str) -> torch.Tensor:
    """Each window attends to all of itself and nothing else: (N, nh, hd) q, (N, nkv, hd) k/v -> (N, nh, hd).

    'flash': one varlen FlashAttention call over the packed rows, windows cut by `cu_seqlens`:
    no padding, no mask, grouped-query attention inside the kernel. 'sdpa' (any device and
    dtype; the CPU path): one unmasked SDPA call per run of equally long windows, each run a view
    (n, L, h, hd) of the packed rows: no padding and no mask either; K/V are repeated only on
    CUDA (float32 there), where the O(L)-memory kernel does not group heads itself.
    """
    if kernel == "flash":
        flash = _flash_varlen()
        assert flash is not None, "kernel 'flash' needs torch.nn.attention.varlen (torch >= 2.10)"
        return flash(q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_len, batch.max_len)
    out = torch.empty_like(q)
    for first, n, length in batch.runs:
        rows = slice(first, first + n * length)
        qs, ks, vs = (t[rows].view(n, length, *t.shape[1:]).transpose(1, 2) for t in (q, k, v))  # (n, h, L, hd)
        if q.is_cuda:  # float32 on CUDA: only the math kernel takes GQA there, and it holds L x L scores
            ks, vs = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (ks, vs))
        y = F.scaled_dot_product_attention(qs, ks, vs, enable_gqa=True)  # (n, nh, L, hd); not causal
        out[rows].view(n, length, *q.shape[1:]).copy_(y.transpose(1, 2))
    return out


class SelfAttention(nn.Module):
    """Bidirectional grouped-query attention within each window of a packed batch."""

    def __init__(self, cfg: MistralConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: Packed, kernel: str):
        N = x.shape[0]
        q = self.q_proj(x).view(N, self.n_heads, self.head_dim)  # (N, nh, hd)
        k = self.k_proj(x).view(N, self.n_kv, self.head_dim)  # (N, nkv, hd): never repeated to nh
        v = self.v_proj(x).view(N, self.n_kv, self.head_dim)  # (N, nkv, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = varlen_attention(q, k, v, batch, kernel)  # (N, nh, hd)
        return self.o_proj(y.reshape(N, self.n_heads * self.head_dim))


CHUNK_BYTES = 256 << 20  # per-token blocks run this much of their widest intermediate at a time


def by_rows(fn, x: torch.Tensor, width: int) -> torch.Tensor:
    """`fn(x)` for a per-token `fn` whose widest intermediate is `width` columns, in chunks of rows
    that keep it within `CHUNK_BYTES` whatever the batch: exact, as rows never meet inside `fn`."""
    rows = max(1, CHUNK_BYTES // (width * x.element_size()))
    if x.shape[0] <= rows:
        return fn(x)
    out = torch.empty_like(x)
    for start in range(0, x.shape[0], rows):
        out[start : start + rows] = fn(x[start : start + rows])
    return out


class MLP(nn.Module):
    def __init__(self, cfg: MistralConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        # SwiGLU in place: two 14,336-wide intermediates live at once instead of three.
        # Inference only (no autograd through it).
        gate = F.silu(self.gate_proj(x), inplace=True)
        return self.down_proj(gate.mul_(self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: MistralConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SelfAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, batch: Packed, kernel: str):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, batch, kernel)
        # In chunks of rows: with the head chunked, the MLP's 14,336-wide intermediates would
        # otherwise be the forward's peak (2 x 1.9 GB at 65,536 tokens in bf16).
        feed_forward = lambda rows: self.mlp(self.post_attention_layernorm(rows))  # noqa: E731
        return x + by_rows(feed_forward, x, self.mlp.gate_proj.out_features)


class BidirectionalMistral(nn.Module):
    """Mistral without the causal mask and without lm_head; returns final-norm token states."""

    def __init__(self, cfg: MistralConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, batch: Packed, kernel: str = "auto") -> torch.Tensor:
        """(N, d) states of a packed batch; `kernel` as `varlen_attention` takes it, 'auto' by device."""
        if batch.max_len > self.cfg.max_position_embeddings:
            raise ValueError(
                f"Cannot forward {batch.max_len} tokens, the model window is {self.cfg.max_position_embeddings}"
            )
        x = self.embed_tokens(batch.ids)  # (N, d)
        # Positions restart at 0 in every window, as the official right-padded batch has them.
        cos, sin = rotary_cos_sin(batch.positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)  # (N, 1, hd)
        kernel = pick_kernel(kernel, x)
        for layer in self.layers:
            x = layer(x, cos, sin, batch, kernel)
        return self.norm(x)  # (N, d)


# ----------------------------------------------------------------------------- pooling head


class CrossAttention(nn.Module):
    """Token states (queries) attend to the learned latents (keys and values); no mask."""

    def __init__(self, cfg: LatentAttentionConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.num_cross_heads, cfg.cross_dim_head
        inner = self.n_heads * self.head_dim
        self.to_q = nn.Linear(cfg.latent_dim, inner, bias=False)
        self.to_kv = nn.Linear(cfg.hidden_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, cfg.latent_dim, bias=False)

    def keys_values(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, d) normalised latents -> keys, values (1, h, L, hd): the same for every token, so made once
        per batch and never copied per row (the reference repeats them per row: B * 32 MiB at full size)."""
        L, h, hd = latents.shape[0], self.n_heads, self.head_dim
        k, v = self.to_kv(latents).chunk(2, dim=-1)  # (L, h*hd) each: keys first, then values
        return tuple(t.view(L, h, hd).transpose(0, 1)[None] for t in (k, v))  # (1, h, L, hd)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        R, h, hd = x.shape[0], self.n_heads, self.head_dim
        # Nothing is masked and keys are shared, so all R token queries attend as one sequence.
        q = self.to_q(x).view(1, R, h, hd).transpose(1, 2)  # (1, h, R, hd)
        y = F.scaled_dot_product_attention(q, k, v)  # (1, h, R, hd); scale hd**-0.5, as the reference
        return self.to_out(y.transpose(1, 2).reshape(R, h * hd))  # (R, d)


class GEGLU(nn.Module):
    def forward(self, x):
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)  # exact (erf) GELU, as the reference


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # Sequential so parameter names are net.0 / net.2, as in the checkpoint.
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class PreNorm(nn.Module):
    """LayerNorm before `fn`, and `norm_context` for the latents when `context_dim` is given."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim else None
        self.fn = fn

    def forward(self, x, *context):
        return self.fn(self.norm(x), *context)


class LatentAttentionPooling(nn.Module):
    """Per token: cross-attention to the latents, then GEGLU, both residual; then the masked mean.

    Both blocks act on each token alone, so running them on the pooled rows only (real tokens
    past the instruction) gives the official result exactly; chunks of rows bound the 32,768-wide
    intermediates to `CHUNK_BYTES` each, whatever the batch.
    """

    def __init__(self, cfg: LatentAttentionConfig):
        super().__init__()
        self.cfg = cfg
        attend = PreNorm(cfg.latent_dim, CrossAttention(cfg), context_dim=cfg.hidden_dim)
        self.cross_attend_blocks = nn.ModuleList([attend, PreNorm(cfg.latent_dim, FeedForward(cfg.latent_dim))])
        self.latents = nn.Parameter(torch.randn(cfg.num_latents_value, cfg.latent_dim))

    def forward(self, hiddens: torch.Tensor, batch: Packed) -> torch.Tensor:
        """(N, d) token states of a packed batch -> (B, d) float32 pooled vectors."""
        attend, feed_forward = self.cross_attend_blocks
        k, v = attend.fn.keys_values(attend.norm_context(self.latents))  # (1, h, L, hd) each
        inner = self.cfg.num_cross_heads * self.cfg.cross_dim_head
        chunk = max(1, CHUNK_BYTES // (inner * hiddens.element_size()))
        offsets = np.asarray(batch.pool_offsets)
        sums = hiddens.new_zeros(len(batch.lengths), hiddens.shape[1], dtype=torch.float32)  # (B, d)
        for start in range(0, offsets[-1], chunk):
            stop = min(start + chunk, offsets[-1])
            x = hiddens[batch.pool_rows[start:stop]]  # (C, d)
            x = x + attend(x, k, v)
            x = x + feed_forward(x)  # (C, d)
            # The windows this chunk holds rows of, and each row's window as a one-hot matrix: a
            # deterministic segment sum (index_add_ on CUDA adds in a different order every run).
            first, last = np.searchsorted(offsets, [start, stop - 1], side="right") - 1
            windows = torch.arange(first, last + 1, device=x.device)
            one_hot = (batch.pool_owner[start:stop][None, :] == windows[:, None]).float()  # (w, C)
            sums[first : last + 1] += one_hot @ x.float()  # float32 sum, as the reference
        counts = torch.tensor(np.diff(offsets), dtype=torch.float32, device=sums.device)[:, None]  # (B, 1)
        pooled = sums / counts  # (B, d)
        return F.normalize(pooled, p=2, dim=-1) if self.cfg.output_normalize else pooled


class NVEmbedModel(nn.Module):
    def __init__(self, cfg: NVEmbedConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding_model = BidirectionalMistral(cfg.text)
        self.latent_attention_model = LatentAttentionPooling(cfg.latent)

    def forward(self, batch: Packed, kernel: str = "auto") -> torch.Tensor:
        """A packed batch of B windows (`Packed.from_padded` takes the official padded input) -> (B, dim) float32."""
        return self.latent_attention_model(self.embedding_model(batch, kernel), batch)

    def compile_blocks(self) -> NVEmbedModel:
        """torch.compile the per-token blocks: each RMSNorm, SwiGLU MLP and the head's GEGLU block.

        Fuses their float32 and elementwise temporaries into the surrounding kernels; attention
        and the per-window loop stay eager. Optional, never required: it pays on small models
        and CPU (docs/benchmarks.md), costs a compile per process (about a minute on 2 cores),
        and `dynamic=True` keeps the packed length N from recompiling every batch.
        """
        for layer in self.embedding_model.layers:
            for block in (layer.input_layernorm, layer.post_attention_layernorm, layer.mlp):
                block.compile(dynamic=True)
        self.embedding_model.norm.compile(dynamic=True)
        self.latent_attention_model.cross_attend_blocks[1].compile(dynamic=True)
        return self


# ----------------------------------------------------------------------------- loading


def is_nvembed_checkpoint(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == MODEL_TYPE


def read_nvembed_config(path: str | Path) -> NVEmbedConfig:
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path} has no config.json: not an NV-Embed checkpoint directory")
    try:
        return NVEmbedConfig.from_checkpoint_config(json.loads(config.read_text()))
    except ValueError as err:
        raise ModelError(f"{config}: {err}") from None


def resolve_placement(device: str | torch.device, dtype: str | torch.dtype) -> tuple[torch.device, torch.dtype]:
    """device 'auto': CUDA when present, else CPU. dtype 'auto': bfloat16 on CUDA, float32 on CPU."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    if dtype == "auto":
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    if not isinstance(dtype, torch.dtype) and dtype not in DTYPES:
        raise ConfigError(f"Invalid dtype {dtype!r}. Valid: auto, {', '.join(DTYPES)}")
    return device, DTYPES.get(dtype, dtype)


def checkpoint_files(path: str | Path) -> dict[str, Path]:
    """Map each weight name to the safetensors file that holds it (sharded index or single file)."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        for shard in sorted(set(weight_map.values())):
            if not (path / shard).is_file():
                example = next(k for k, v in weight_map.items() if v == shard)
                raise FileNotFoundError(f"{index.name} names shard {shard} (holding e.g. {example}), missing in {path}")
        return {key: path / shard for key, shard in weight_map.items()}
    single = path / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(single, framework="pt") as f:
            return {key: single for key in f.keys()}
    found = sorted(p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".safetensors"})
    raise FileNotFoundError(
        f"{path} has neither model.safetensors.index.json nor model.safetensors (weight files seen: {found}); "
        "only safetensors checkpoints are loaded, never pickles"
    )


def load_nvembed(
    path: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype = "auto"
) -> NVEmbedModel:
    """Build the model from a checkpoint directory, tensor by tensor, straight onto `device`/`dtype`.

    The model is created on the meta device (no memory), then each tensor is read, cast and
    placed. Each tensor gets its own `safe_open`: a file kept open stays memory-mapped and its
    pages count as resident, which would double peak host memory for a one-file checkpoint.
    Peak host memory is thus the model in `dtype` (on CPU) plus one tensor.
    """
    from safetensors import safe_open

    path, (device, dtype) = Path(path), resolve_placement(device, dtype)
    cfg = read_nvembed_config(path)
    with torch.device("meta"):
        model = NVEmbedModel(cfg)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    files = {k: f for k, f in checkpoint_files(path).items() if not k.endswith("rotary_emb.inv_freq")}  # recomputed
    missing, unexpected = sorted(expected.keys() - files.keys()), sorted(files.keys() - expected.keys())
    if missing:
        raise ModelError(f"{path}: {len(missing)} weights missing from the checkpoint, e.g. {missing[:5]}")
    if unexpected:
        raise ModelError(f"{path}: {len(unexpected)} unexpected weights in the checkpoint, e.g. {unexpected[:5]}")
    for key in sorted(expected, key=lambda k: (files[k].name, k)):
        with safe_open(files[key], framework="pt", device="cpu") as f:
            if key not in f.keys():
                raise ValueError(f"{files[key].name} does not hold {key}, although the index says it does")
            got = tuple(f.get_slice(key).get_shape())
            if got != expected[key]:
                raise ValueError(f"{files[key].name}: {key} has shape {got}, the config implies {expected[key]}")
            # copy=True: without a cast the result would still point into the memory-mapped file.
            tensor = f.get_tensor(key).to(device=device, dtype=dtype, copy=True)
        module_name, _, leaf = key.rpartition(".")
        setattr(model.get_submodule(module_name), leaf, nn.Parameter(tensor, requires_grad=False))
    assert not any(p.is_meta for p in model.parameters()), "a parameter was left on the meta device"
    log.info("loaded NV-Embed from %s: %d tensors, %s on %s", path, len(expected), dtype, device)
    return model.eval()


LLAMA_TOKENIZER_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}  # LlamaTokenizerFast's
PIPELINE_KEYS = ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder")
# Fixed texts (never note text) whose ids tell NV-Embed-v2's pipeline from the Metaspace one transformers 5
# builds for Llama tokenizers, or a byte-level one: spaces at either end, alone and in runs, "▁", text next
# to literal special tokens, byte fallback, accents, CJK, emoji.
TOKENIZER_PROBES = {
    "empty": "",
    "lone space": " ",
    "leading spaces": "  a b",
    "trailing spaces": "a b  ",
    "space runs": "a  b   c    d",
    "lone ▁": "▁",
    "leading ▁": "▁a ▁ b▁",
    "text after <s>": "<s>a <s> b",
    "text after </s>": "a</s>b </s> c",
    "tabs and newlines": "a\tb\n\nc\r\n",
    "byte fallback": "\x00\x7f 𝔘 ꙮ",
    "accents, CJK, emoji": "Café naïve 患者 흉통 😀 👍🏽",
}


def load_nvembed_tokenizer(path: str | Path):
    """The checkpoint's `tokenizer.json` exactly as shipped, as a fast tokenizer; pad = EOS, right padding.

    The official environment (transformers 4.42, `LlamaTokenizerFast`) runs the shipped pipeline:
    normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, byte-fallback BPE, a `<s> $A`
    template. transformers 5 rebuilds Llama tokenizers with a Metaspace pre-tokenizer instead,
    which changes ids for leading spaces, a lone space, a leading "▁" and text after `<s>`/`</s>`.
    So the file is wrapped in the generic `PreTrainedTokenizerFast`, which keeps it as is (checked
    by `check_keeps_shipped_pipeline`), with BOS/EOS/UNK from tokenizer_config.json and
    special_tokens_map.json. Either serialisation loads: NV-Embed-v2's own (tokenizers < 0.20,
    merges as "a b" strings) and today's (merges as pairs). Nothing from the checkpoint is
    executed: `tokenizer_class` and any tokenizer code it ships are ignored.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    file = path / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no tokenizer.json; NV-Embed needs the checkpoint's fast tokenizer")
    shipped_text = file.read_text(encoding="utf-8")
    backend = Tokenizer.from_str(shipped_text)
    settings = _tokenizer_settings(path)
    specials = {k: settings[k] for k in LLAMA_TOKENIZER_DEFAULTS}
    absent = {k: v for k, v in specials.items() if backend.token_to_id(v) is None}
    if absent:
        raise ValueError(f"{file}: special tokens {absent} are not in the vocabulary; NV-Embed needs BOS, EOS and UNK")
    if settings.get("add_prefix_space") is not None:
        # LlamaTokenizerFast would then rebuild the tokenizer from tokenizer.model, not tokenizer.json.
        raise ValueError(f"{path}/tokenizer_config.json sets add_prefix_space, which NV-Embed-v2 does not")
    _check_template(backend, settings, file)
    extra = {k: settings[k] for k in ("model_max_length", "clean_up_tokenization_spaces") if k in settings}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=specials["eos_token"], padding_side="right", **specials, **extra
    )
    check_keeps_shipped_pipeline(tokenizer, shipped_text, file)
    return tokenizer


def check_keeps_shipped_pipeline(tokenizer, shipped_text: str, file: Path) -> None:
    """Fail rather than embed with ids the official model never saw, should a transformers release
    start rewriting generic fast tokenizers too (as version 5 rewrites Llama's).

    Compares behaviour, not the file's text: the ids `tokenizer` gives the probes as the pipeline
    calls it, against those of the shipped pipeline run by `tokenizers` itself; and each pipeline
    component and added token, both written out by the installed `tokenizers`, so that the file's
    serialisation (merges as "a b" strings before tokenizers 0.20, as pairs since) does not matter.
    """
    from tokenizers import Tokenizer

    shipped = Tokenizer.from_str(shipped_text)  # a fresh copy: the wrapper may have changed the one it was given
    texts = list(TOKENIZER_PROBES.values())
    expected = [encoding.ids for encoding in shipped.encode_batch(texts, add_special_tokens=True)]
    got = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    loaded = tokenizer.backend_tokenizer
    changed = [k for k in PIPELINE_KEYS if _serialised(getattr(shipped, k)) != _serialised(getattr(loaded, k))]
    kept = [token.__getstate__() for token in loaded.get_added_tokens_decoder().values()]
    changed += [
        f"added token {token.content!r}"
        for token in shipped.get_added_tokens_decoder().values()
        if token.__getstate__() not in kept
    ]
    differ = [name for name, want, have in zip(TOKENIZER_PROBES, expected, got) if list(have) != want]
    if changed or differ:
        import transformers

        what = ", ".join(changed) or "tokenization"
        ids = f" (other ids for: {', '.join(differ)})" if differ else ""
        raise RuntimeError(f"transformers {transformers.__version__} changed the {what} of {file}{ids}")


def _serialised(component) -> bytes | None:
    """A pipeline component as the installed `tokenizers` writes it (its pickle state: compact JSON)."""
    return None if component is None else component.__getstate__()


def _tokenizer_settings(path: Path) -> dict[str, Any]:
    """tokenizer_config.json, then special_tokens_map.json on top (transformers' precedence),
    over LlamaTokenizerFast's defaults; special tokens as plain strings."""
    settings: dict[str, Any] = {**LLAMA_TOKENIZER_DEFAULTS, "add_bos_token": True, "add_eos_token": False}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (path / name).is_file():
            raw = json.loads((path / name).read_text(encoding="utf-8"))
            settings.update({k: v for k, v in raw.items() if v is not None})
    for key in LLAMA_TOKENIZER_DEFAULTS:
        if isinstance(settings[key], dict):  # an AddedToken written out: {"content": "<s>", ...}
            settings[key] = settings[key]["content"]
    return settings


def _check_template(backend, settings: dict[str, Any], file: Path) -> None:
    """The official LlamaTokenizerFast rebuilds the template from add_bos_token/add_eos_token: the
    shipped post_processor is used as is only where it agrees with them, as NV-Embed-v2's does."""
    bare = backend.encode("a", add_special_tokens=False).ids
    bos, eos = backend.token_to_id(settings["bos_token"]), backend.token_to_id(settings["eos_token"])
    expected = [bos] * bool(settings["add_bos_token"]) + bare + [eos] * bool(settings["add_eos_token"])
    got = backend.encode("a").ids
    if got != expected:
        raise ValueError(
            f"{file}: the post_processor turns 'a' into {got}, but add_bos_token={settings['add_bos_token']} and "
            f"add_eos_token={settings['add_eos_token']} in tokenizer_config.json mean {expected}"
        )


def resolve_hub_checkpoint(repo_id: str, allow_download: bool = False, cache_dir: str | None = None) -> tuple[str, str]:
    """Local snapshot directory and commit of a hub model, from the Hugging Face cache.

    Only configs, tokenizer files and safetensors are fetched: the repo's Python files are never
    needed. `allow_download=False` (the default for jobs) fails instead of downloading mid-job.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(
            repo_id,
            local_files_only=not allow_download,
            cache_dir=cache_dir,
            allow_patterns=["*.json", "*.safetensors", "tokenizer.model"],
        )
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache (HF_HUB_CACHE / {cache_dir or 'default'}). "
            f"Fetch it once with `hf download {repo_id}` where there is internet, pass a local checkpoint "
            "directory, or allow the download"
        ) from None
    return snapshot, Path(snapshot).name


# ----------------------------------------------------------------------------- encoder


class NVEmbedEncoder:
    """Implements `embednv.models.base.Encoder` for NV-Embed checkpoints: one load, any instruction.

    `embed(sequences, instruction)` takes the prefix the tokenizer put before each text (see
    `build_instruction`; `instruction` given here is the default). The first
    `len(tokenizer.tokenize(instruction))` positions are left out of the mean, counted from
    position 0 where BOS sits, so the last instruction token is pooled: a quirk of the official
    model, kept so embeddings match it. The backbone still sees every token.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        instruction: str = "",
        compile: bool = False,
    ):
        model = load_nvembed(path, device, dtype)
        self._bind(model.compile_blocks() if compile else model, load_nvembed_tokenizer(path), instruction)

    @classmethod
    def from_model(cls, model: NVEmbedModel, tokenizer, instruction: str = "") -> NVEmbedEncoder:
        """Wrap a model already built (the GPU script's float32 copy of the bf16 one: no second load)."""
        encoder = cls.__new__(cls)
        encoder._bind(model, tokenizer, instruction)
        return encoder

    def _bind(self, model: NVEmbedModel, tokenizer, instruction: str) -> None:
        self.model, self.tokenizer, self.instruction = model, tokenizer, instruction
        self.dim = model.cfg.output_dim
        self.max_tokens = min(DEFAULT_MAX_TOKENS, model.cfg.text.max_position_embeddings)
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self._skips: dict[str, int] = {}

    def pool_skip(self, instruction: str) -> int:
        """Positions left out of the mean for `instruction`: one tokenizer call per instruction, then cached."""
        if not instruction or not self.model.cfg.is_mask_instruction:
            return 0
        if instruction not in self._skips:
            self._skips[instruction] = len(self.tokenizer.tokenize(instruction))
        return self._skips[instruction]

    @property
    def n_pool_skip(self) -> int:
        return self.pool_skip(self.instruction)

    def pack(self, sequences: Sequence[Sequence[int]], instruction: str | None = None) -> Packed:
        """The windows end to end, with the pooled rows of `instruction` (None: the default)."""
        n_skip = self.pool_skip(self.instruction if instruction is None else instruction)
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        if lengths.max() > self.max_tokens:
            raise ValueError(f"A sequence has {lengths.max()} tokens, the model window is {self.max_tokens}")
        if lengths.min() <= n_skip:
            row = int(lengths.argmin())
            raise ValueError(
                f"Sequence {row} has {lengths[row]} tokens, not more than the {n_skip} instruction "
                "positions left out of pooling: nothing would be pooled"
            )
        return Packed.from_sequences(sequences, n_skip)

    @torch.inference_mode()
    def embed(self, sequences: Sequence[Sequence[int]], instruction: str | None = None) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised. Out-of-memory errors propagate unchanged."""
        if len(sequences) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model(self.pack(sequences, instruction).to(self.device)).float().cpu().numpy()
