"""A model that costs nothing: measures the pipeline around the model, not the model.

A probe checkpoint is a directory with a tokenizer (any Hugging Face fast tokenizer) and a
config.json saying `{"model_type": "embednv-probe", "hidden_size": 4096}`. Its encoder does no
arithmetic worth the name: each sequence becomes a one-hot unit vector at a position derived
from its token ids, so the output is deterministic, unit length and as wide as a real model's.
`bench/fanout.py` uses it to find how many rows one driver can read, tokenize, move and write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

PROBE_MODEL_TYPE = "embednv-probe"


class ProbeEncoder:
    """Implements `embednv.models.base.Encoder` with no model at all."""

    def __init__(self, path: str):
        self.dim = int(json.loads((Path(path) / "config.json").read_text())["hidden_size"])

    def embed(self, sequences: Sequence[Sequence[int]], instruction: str = "") -> np.ndarray:
        vectors = np.zeros((len(sequences), self.dim), dtype=np.float32)
        hot = [sum(seq) % self.dim for seq in sequences]
        vectors[np.arange(len(sequences)), hot] = 1.0
        return vectors


def write_probe_checkpoint(directory: Path, tokenizer_dir: Path, dim: int, max_tokens: int = 512) -> Path:
    """A probe checkpoint in `directory` that tokenizes like the model in `tokenizer_dir`."""
    from transformers import AutoTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, use_fast=True).save_pretrained(directory)
    config = {"model_type": PROBE_MODEL_TYPE, "hidden_size": dim, "max_position_embeddings": max_tokens}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
