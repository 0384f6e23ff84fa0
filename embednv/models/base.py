"""The two halves every embedding model provides: a tokenizer (CPU stage) and an encoder (model stage).

The pipeline never looks inside a model. The CPU stage turns note text into token ids with
`NoteTokenizer`-like objects, the model stage turns padded-free lists of token ids into
L2-normalised float32 vectors with an `Encoder`. Keeping the two apart lets tokenization run
on CPU workers while the accelerator only runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what to load, from where, and what it produces.

    Built by `embednv.models.registry.resolve_model` on the driver, sent to workers, which
    load from `path` with local files only (never a download mid-job).
    """

    kind: str  # "hf-encoder", "nvembed" or "probe" (costs nothing, for benchmarks): which loader builds it
    name: str  # what the user asked for, resolved ("minilm", "nvidia/NV-Embed-v2", a path)
    path: str  # local directory holding config.json, tokenizer files and weights
    revision: str  # hub commit or a sha256 of the weight files: what exactly produced the output
    dim: int  # embedding width
    max_tokens: int  # the model's window, special and instruction tokens included


class Encoder(Protocol):
    """Runs the model on one micro-batch of token id sequences."""

    dim: int

    def embed(self, sequences: Sequence[Sequence[int]], instruction: str = "") -> np.ndarray:
        """Embed `sequences` (each a full model input, special tokens included, unpadded).

        `instruction` is the prefix the tokenizer put before each text: a model whose pooling
        depends on it (NV-Embed-v2 leaves its tokens out of the mean) reads it here, per batch,
        so that one loaded model embeds queries and documents alike; others ignore it.
        Returns float32 `(len(sequences), dim)`, each row L2-normalised. Raises the framework's
        out-of-memory error unchanged so callers can split the batch.
        """
        ...
