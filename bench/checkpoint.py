"""A random NV-Embed-v2 checkpoint in the official layout, streamed to disk tensor by tensor.

Used by the GPU acceptance script (`bench/nvembed_device.py`) and `make check-fullsize`
(`bench/fullsize.py`): config.json as shipped, `model-0000i-of-00004.safetensors` shards with
`model.safetensors.index.json`, and a tokenizer. Names and shapes come from embednv's own model
built on the meta device, so the loader's name and shape checks are exercised for real.

Nothing is held in memory but one chunk of one tensor: each shard's safetensors header is
written first (every offset is known from the shapes), then each tensor's bytes as they are
generated. 7.85B parameters take about a minute on 2 CPU cores with `method="tiled"`, seconds on
a GPU with `method="randn"`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the fixture tokenizer and the official converter live there
# config.json of nvidia/NV-Embed-v2 as shipped (less _name_or_path): the latent-attention part
# gives only its type, so the loader's official defaults size the pooling head.
OFFICIAL_CONFIG = {
    "add_eos": True, "add_pad_token": True, "architectures": ["NVEmbedModel"],
    "auto_map": {"AutoConfig": "configuration_nvembed.NVEmbedConfig", "AutoModel": "modeling_nvembed.NVEmbedModel"},
    "hidden_size": 4096, "is_mask_instruction": True, "latent_attention_config": {"model_type": "latent_attention"},
    "mask_type": "b", "model_type": "nvembed", "padding_side": "right",
    "text_config": {
        "architectures": ["MistralModel"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 32768, "model_type": "bidir_mistral", "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": 32000,
    },
    "torch_dtype": "bfloat16", "transformers_version": "4.42.4",
}  # fmt: skip
# The same layout at toy size (the test fixture's shapes): seconds on CPU, for --dry-run and tests.
TINY_CONFIG = {
    **OFFICIAL_CONFIG,
    "hidden_size": 64,
    "text_config": {**OFFICIAL_CONFIG["text_config"], "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "max_position_embeddings": 512},
    "latent_attention_config": {"model_type": "latent_attention", "num_latents_value": 16, "num_cross_heads": 2,
                                "cross_dim_head": 24, "latent_dim": 64, "hidden_dim": 64},
}  # fmt: skip
SAFETENSORS_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
CHUNK = 1 << 25  # values generated at a time: 128 MiB of float32
TILE = CHUNK  # "tiled": every chunk is a window into one block of this many random values


def tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every weight name and shape embednv's model expects for `config`, in module order."""
    from embednv.models.nvembed import NVEmbedConfig, NVEmbedModel

    with torch.device("meta"):
        model = NVEmbedModel(NVEmbedConfig.from_checkpoint_config(config))
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def checkpoint_bytes(config: dict, dtype: torch.dtype = torch.bfloat16) -> int:
    """Size of the weight files, headers aside: what to check free disk and memory against."""
    return sum(math.prod(s) for s in tensor_shapes(config).values()) * torch.empty(0, dtype=dtype).element_size()


def _init(name: str, shape: tuple[int, ...], n_layers: int) -> tuple[str, float]:
    """(fill, scale) per weight: variance-preserving, so 32 random layers keep activations finite.

    Linear weights ~ N(0, 1/fan_in); the projections that write into the residual stream are
    scaled down by sqrt(2 * layers) as in GPT-2, which keeps the random network smooth enough
    that bfloat16 and float32 agree (the acceptance script compares them).
    """
    if name.endswith("bias"):
        return "zeros", 0.0
    if "norm" in name:  # RMSNorm and LayerNorm weights
        return "ones", 1.0
    if name.endswith("latents") or "embed_tokens" in name:
        return "normal", 1.0
    residual = name.endswith(("o_proj.weight", "down_proj.weight"))
    return "normal", (1.0 / math.sqrt(shape[1])) / (math.sqrt(2 * n_layers) if residual else 1.0)


def _values(fill: str, scale: float, n: int, method: str, gen: torch.Generator, tile: torch.Tensor | None,
            dtype: torch.dtype, device: torch.device):  # fmt: skip
    """Yield `n` values of one tensor in chunks of at most CHUNK, already in `dtype`, on CPU."""
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        if fill != "normal":
            chunk = torch.full((size,), scale, dtype=dtype, device=device)
        elif method == "randn":
            chunk = torch.empty(size, dtype=dtype, device=device).normal_(0.0, scale, generator=gen)  # drawn in dtype
        else:  # a window into the random block, at a random offset: a memory copy, no sampling
            offset = int(torch.randint(0, TILE - size + 1, (1,), generator=gen, device=device))
            chunk = (tile[offset : offset + size] * scale).to(dtype)
        yield chunk.cpu()


def write_random_checkpoint(
    directory: str | Path,
    config: dict = OFFICIAL_CONFIG,
    shards: int = 4,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cpu",
    method: str = "randn",
    seed: int = 0,
) -> dict:
    """Write random weights for `config` into `directory` (config.json, shards, index); returns facts.

    `method`: "randn" draws every value (use on a GPU); "tiled" copies windows of one random block
    (values repeat across tensors, fine for memory and speed checks; ~10x faster on CPU). Shards
    are cut in module order at equal byte counts, as the official files are. The tokenizer is
    written separately (`write_tokenizer`).
    """
    if method not in ("randn", "tiled"):
        raise ValueError(f"Invalid method: {method!r}. Valid: randn, tiled")
    started = time.perf_counter()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(config)
    n_layers = config["text_config"]["num_hidden_layers"]
    size = torch.empty(0, dtype=dtype).element_size()
    total = sum(math.prod(s) for s in shapes.values()) * size
    groups: list[list[str]] = [[] for _ in range(shards)]
    written = 0
    for name, shape in shapes.items():  # the next shard starts once this one holds its share
        groups[min(shards - 1, written * shards // total)].append(name)
        written += math.prod(shape) * size
    device_ = torch.device(device)
    gen = torch.Generator(device=device_).manual_seed(seed)
    tile = torch.randn(TILE, generator=gen, device=device_) if method == "tiled" else None
    weight_map = {}
    for index, names in enumerate(groups):
        shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name in names:
            n_bytes = math.prod(shapes[name]) * size
            header[name] = {
                "dtype": SAFETENSORS_DTYPES[dtype],
                "shape": list(shapes[name]),
                "data_offsets": [offset, offset + n_bytes],
            }
            offset += n_bytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data must start 8-byte aligned
        with open(out / shard, "wb") as handle:
            handle.write(len(encoded).to_bytes(8, "little") + encoded)
            for name in names:
                fill, scale = _init(name, shapes[name], n_layers)
                for chunk in _values(fill, scale, math.prod(shapes[name]), method, gen, tile, dtype, device_):
                    handle.write(chunk.view(torch.uint8).numpy().data)
                weight_map[name] = shard
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(
        json.dumps({**config, "torch_dtype": str(dtype).removeprefix("torch.")}, indent=2) + "\n"
    )
    return {"path": str(out), "bytes": total, "params": total // size, "shards": shards, "dtype": str(dtype).removeprefix("torch."),
            "method": method, "device": device, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def write_tokenizer(directory: str | Path, vocab_size: int, corpus: list[str] | None = None) -> str:
    """Mistral-7B's own vocabulary in NV-Embed-v2's tokenizer files, written by the official environment
    (`make official-tokenizer`), when the vocabulary is 32,000 and that environment is there; else the
    test fixture's BPE tokenizer trained on `corpus` (real notes give realistic token counts).
    Returns which one was written, in words."""
    out = Path(directory)
    why = ""
    if vocab_size == 32000:
        try:
            return _write_mistral_tokenizer(out)
        except Exception as error:  # noqa: BLE001 - absent or unconvertible: say so and fall back
            why = f" (Mistral vocabulary unavailable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    sys.path.insert(0, str(TESTS))
    from nvembed_fixtures import write_tiny_tokenizer

    write_tiny_tokenizer(out, vocab_size, corpus=corpus)
    return f"test-fixture BPE, vocab {vocab_size}, trained on {len(corpus) if corpus else 'the fixture'} texts{why}"


def _write_mistral_tokenizer(out: Path) -> str:
    """NV-Embed-v2's files exactly: transformers 4.42.4 with tokenizers 0.19 (the versions its model card
    names) convert Mistral-7B-v0.1's sentencepiece model, shipped in the mistral-common wheel.

    Not through the installed transformers: version 5 rebuilds Llama tokenizers with a Metaspace
    pre-tokenizer, whose ids differ from NV-Embed-v2's (" " gives [1, 28705], not [1, 259]); see
    docs/nvembed.md, "Tokenizer fidelity". `tests/mistral_tokenizer.py` runs in that environment.
    """
    sys.path.insert(0, str(TESTS))
    from mistral_tokenizer import OFFICIAL_VENV, OFFICIAL_VERSIONS, sentencepiece_model_path

    python = OFFICIAL_VENV / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"{OFFICIAL_VENV} is missing: run `make official-tokenizer`")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": ""}
    command = [str(python), str(TESTS / "mistral_tokenizer.py"), "convert", str(sentencepiece_model_path()), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the official tokenizer environment failed: {done.stderr.strip()[-500:]}")
    versions = ", ".join(f"{k} {v}" for k, v in OFFICIAL_VERSIONS.items())
    return f"Mistral-7B v1 vocabulary (32000), NV-Embed-v2's tokenizer files as {versions} write them"
