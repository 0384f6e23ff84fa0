"""A generic Hugging Face encoder (BERT-like) with mean pooling and L2 normalisation.

This is how sentence-transformers embeds with all-MiniLM-L6-v2 (the bundled `minilm` model):
mean over every non-padding token, special tokens included, then unit length.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np


class HFEncoder:
    """Implements `embednv.models.base.Encoder` for any `AutoModel` encoder directory."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32"):
        import torch
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        self.device = torch.device(device)
        with _no_progress_bars():
            self.model = AutoModel.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.dim = int(config.hidden_size)

    def embed(self, sequences: Sequence[Sequence[int]], instruction: str = "") -> np.ndarray:
        """Mean over every token: an instruction is pooled like the text, so it needs no handling here."""
        import torch

        width = max(len(s) for s in sequences)
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)  # right padding
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        ids, mask = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, D)
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled.cpu().numpy()


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' "Loading weights" bar, hidden while the model loads: embednv logs its own line
    (a Ray actor's bar would land in the driver's log), and a caller's setting is restored after."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()
