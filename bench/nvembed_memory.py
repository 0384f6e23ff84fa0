"""Counting a forward without running it: live tensor bytes and FLOPs on the meta device.

`bench/nvembed_model.py` uses these to size one 65,536-token micro-batch at NV-Embed-v2's real
widths, which 2 CPU cores could not compute in useful time (~100 TFLOP), and `head_rss` to check
the live-bytes count against the resident memory of a real run where one is affordable.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages alive at once, as ops make them and references drop them.

    What an allocator must hold at its busiest, without arithmetic (meta tensors). Storages of
    `known` tensors (weights, inputs) are not counted. An op counts as its outputs: a fused op
    (scaled_dot_product_attention, linear) is seen whole, its own scratch space is not. Attention
    outputs get the memory layout the fused kernels give them, (B, T, h, hd) transposed to
    (B, h, T, hd), so that a reshape back to (B, T, h * hd) is a view, as on a real device.
    """

    def __init__(self, known: list[torch.Tensor] = ()):
        super().__init__()
        self.live = self.peak = 0
        self.peak_op: str | None = None
        self._seen = {id(t.untyped_storage()) for t in known}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if "scaled_dot_product" in str(func) and isinstance(out, torch.Tensor) and out.is_meta and out.dim() == 4:
            b, h, t, hd = out.shape
            out = torch.empty(b, t, h, hd, dtype=out.dtype, device=out.device).transpose(1, 2)
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._add(tensor.untyped_storage())
        if self.live > self.peak:
            self.peak, self.peak_op = self.live, str(func)
        return out

    def _add(self, storage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        self._seen.add(key)
        self.live += storage.nbytes()
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, n_bytes: int) -> None:
        self._seen.discard(key)
        self.live -= n_bytes


def flops(run) -> int:
    """Matmul and attention FLOPs of `run()` as torch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def useful_flops(cfg, lengths: list[int], n_skip: int) -> int:
    """The FLOPs an NV-Embed forward of windows of `lengths` needs (2 per multiply-add).

    Every real token through every layer's projections and MLP; attention within each window
    (QK^T and AV); the pooling head (to_q, cross-attention to the latents, to_out, GEGLU) on the
    tokens it pools, those past the first `n_skip`; the latents' keys and values once.
    """
    t, lat = cfg.text, cfg.latent
    d, q_width, kv_width = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    per_token = 2 * t.num_hidden_layers * (d * (2 * q_width + 2 * kv_width) + 3 * d * t.intermediate_size)
    attention = 4 * t.num_hidden_layers * q_width * sum(n * n for n in lengths)
    inner = lat.num_cross_heads * lat.cross_dim_head
    per_pooled = 4 * d * inner + 4 * inner * lat.num_latents_value + 2 * d * 8 * d + 2 * 4 * d * d
    latents = 2 * lat.num_latents_value * d * 2 * inner
    return per_token * sum(lengths) + attention + per_pooled * sum(n - n_skip for n in lengths) + latents


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


HEAD_CHECK_CHUNK_BYTES = 64 << 20  # smaller than the default, so that chunking shows at a size a CPU can run


def head_rss(module, tokens: int, config: dict, n_skip: int = 32) -> dict:
    """The pooling head alone, float32, on `tokens` random states of one window: the peak resident
    memory it adds (VmHWM, reset just before) and what `LiveTensorBytes` counts for it on meta."""
    from embednv.models import nvembed

    cfg = module.NVEmbedConfig.from_checkpoint_config(config)
    packed = hasattr(module, "Packed")
    if packed:
        module.CHUNK_BYTES = HEAD_CHECK_CHUNK_BYTES

    def forward(head, device):
        if packed:
            states = torch.randn(tokens, cfg.text.hidden_size, device=device)
            batch = module.Packed.from_sequences([[0] * tokens], n_skip).to(device)
            return lambda: head(states, batch), [states]
        states = torch.randn(1, tokens, cfg.text.hidden_size, device=device)
        pool = torch.ones(1, tokens, dtype=torch.bool, device=device)
        pool[:, :n_skip] = False
        return lambda: head(states, pool), [states, pool]

    with torch.device("meta"):
        head = module.LatentAttentionPooling(cfg.latent)
    run, inputs = forward(head, "meta")
    tracker = LiveTensorBytes(known=list(head.parameters()) + inputs)
    with torch.inference_mode(), tracker:
        run()
    head = head.to_empty(device="cpu")
    for parameter in head.parameters():
        parameter.data.fill_(0.01)  # touched, so resident before the baseline; values do not matter here
    run, _ = forward(head, "cpu")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status("VmRSS")
    with torch.inference_mode():
        run()
    return {"tokens": tokens, "rss_peak_mib": round((_status("VmHWM") - base) / 2**20),
            "counted_peak_mib": round(tracker.peak / 2**20), "chunk_bytes": HEAD_CHECK_CHUNK_BYTES if packed else None,
            "model_file": "after" if module is nvembed else "before"}  # fmt: skip
