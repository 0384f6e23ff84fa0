"""`Embedder`: texts in, unit vectors out, in this process, with the pipeline's own parts.

The same steps the Ray job runs, without Ray: the model's `NoteTokenizer` windows (prompt
template, overlapping windows for long notes), then `embedding.embed_notes`, the very loop of
the embed actor (token-budgeted micro-batches, halving a batch on out-of-memory, token-weighted
pooling of a long note's windows). A vector from `Embedder.encode` is the vector `embednv embed`
writes for the same text, model and settings.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal, Sequence

import numpy as np

from embednv.embed.config import DEFAULT_BATCH_TOKENS, Device, DType, check_device_and_dtype, default_dtype

log = logging.getLogger(__name__)

ERRORS = ("raise", "nan")
ROWS_PER_CALL = 1_024  # texts tokenized and sorted together, as the actor's default window_rows
NVEMBED_LICENCE = (
    "NV-Embed-v2's weights are licensed CC-BY-NC-4.0 (non-commercial use only): "
    "https://huggingface.co/nvidia/NV-Embed-v2"
)


class Embedder:
    """Embed texts with the model `embednv embed` would use, in this process (no Ray).

    Args:
        model: "auto" (NV-Embed-v2 when CUDA is available, else the bundled "minilm"), "minilm",
            "nvembed" / a hub id (from the local Hugging Face cache, never downloaded), or a
            checkpoint directory. NV-Embed-v2's weights are licensed CC-BY-NC-4.0: non-commercial
            use only (https://huggingface.co/nvidia/NV-Embed-v2); embednv's own code is Apache-2.0.
        device: "auto" (cuda when `torch.cuda.is_available()`, else cpu), "cpu" or "cuda".
        dtype: "auto" (bfloat16 on cuda, float32 on cpu), "float32", "bfloat16" or "float16".
        task: NV-Embed-v2 only: a preset ("similar-notes", "specialty", "diagnosis", "cohort") or a
            free-text task, turned into `Instruct: {task}\\nQuery: ` by `build_instruction`. Use
            one for queries and for maps; leave None for documents to be retrieved. This is the
            default of `encode`, which can name another per call without loading the model again.
        instruction: a raw prefix instead of `task` (not both). Default: none.
        batch_tokens: padded tokens per micro-batch (longest window x windows). Default:
            `DEFAULT_BATCH_TOKENS` for the device (4,096 on CPU, 65,536 on GPU); lower it when a
            GPU shared with other work runs out of memory, raise it on a large idle GPU.
        max_tokens: tokens per model input; longer texts are split into overlapping windows and
            their vectors pooled, never truncated. Default: the model's window (512 MiniLM,
            32,768 NV-Embed-v2).

    `encode(texts)` returns float32 `(len(texts), dim)` unit rows in the order given;
    `encode(texts, task=...)` or `encode(texts, instruction=...)` overrides the instruction for
    that call, so queries and documents come from one loaded model.
    """

    def __init__(
        self,
        model: str = "auto",
        device: Device = "auto",
        dtype: DType = "auto",
        task: str | None = None,
        instruction: str | None = None,
        batch_tokens: int | None = None,
        max_tokens: int | None = None,
    ):
        import torch

        from embednv.embed.tokenize import cached_note_tokenizer
        from embednv.models import registry

        check_device_and_dtype(device, dtype, prefix="")
        self.instruction = resolve_instruction(task, instruction)
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda', but torch sees no CUDA device")
        self.dtype = default_dtype(dtype, self.device)
        self.ref = registry.resolve_model(model, has_gpu=self.device == "cuda", max_tokens=max_tokens)
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS[self.device]
        if self.ref.kind == "nvembed":
            log.info(NVEMBED_LICENCE)
        self.tokenizer = cached_note_tokenizer(self.ref, self.instruction)  # the pipeline's own, cached
        self.encoder = registry.load_encoder(self.ref, self.device, self.dtype)  # no instruction: each call names one
        self.dim = self.ref.dim

    def encode(
        self,
        texts: Sequence[str],
        errors: Literal["raise", "nan"] = "raise",
        *,
        task: str | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """Embed `texts`: float32 `(len(texts), dim)`, each row of unit length, in input order.

        A text that cannot be embedded (not a string, empty or whitespace only, or a window that
        does not fit in accelerator memory even alone) raises ValueError naming its index with
        `errors="raise"` (the default), or gets a row of NaN with `errors="nan"`, so that one bad
        text in a large list does not discard the others' vectors.

        `task` or `instruction` (not both; as in the constructor) apply to this call only; neither
        means the embedder's own. Documents to be retrieved take `instruction=""`.
        """
        from embednv.embed.tokenize import cached_note_tokenizer
        from embednv.embed.worker import embed_notes

        if task is None and instruction is None:
            prefix, tokenizer = self.instruction, self.tokenizer
        else:
            prefix = resolve_instruction(task, instruction)
            tokenizer = cached_note_tokenizer(self.ref, prefix)
        embed = functools.partial(self.encoder.embed, instruction=prefix)
        if errors not in ERRORS:
            raise ValueError(f"Invalid errors: {errors!r}. Valid: {', '.join(ERRORS)}")
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not one string: wrap it as [text]")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), ROWS_PER_CALL):
            chunk = texts[start : start + ROWS_PER_CALL]
            failures = {i: why for i, text in enumerate(chunk) if (why := _unusable(text))}
            good = [i for i in range(len(chunk)) if i not in failures]
            if errors == "raise" and failures:
                _raise(start, failures)
            notes = tokenizer([chunk[i] for i in good]) if good else []
            result = embed_notes(embed, self.dim, [note.windows for note in notes], self.batch_tokens)
            failures.update({good[i]: why for i, why in result.failures.items()})
            if errors == "raise" and failures:
                _raise(start, failures)
            out[[start + i for i in good]] = result.vectors
            out[[start + i for i in failures]] = math.nan
        return out

    def __repr__(self) -> str:
        return f"Embedder(model={self.ref.name!r}, device={self.device!r}, dtype={self.dtype!r}, dim={self.dim})"


def resolve_instruction(task: str | None, instruction: str | None) -> str:
    """The prefix for `task` (a preset or free text, see `build_instruction`) or a raw `instruction`."""
    if task and instruction:
        raise ValueError("Give task or instruction, not both")
    if task:
        from embednv.models.nvembed import build_instruction

        return build_instruction(task)
    return instruction or ""


def _unusable(text) -> str | None:
    """Why a text cannot be embedded, in the reader's words; None when it can."""
    if text is None:
        return "text is null"
    if not isinstance(text, str):
        return f"text is not a string ({type(text).__name__})"
    if not text.strip():
        return "text is empty or whitespace only"
    return None


def _raise(start: int, failures: dict[int, str]) -> None:
    first = min(failures)
    more = f" (and {len(failures) - 1} more in texts {start}..{start + ROWS_PER_CALL - 1})" if len(failures) > 1 else ""
    raise ValueError(
        f"text {start + first} cannot be embedded: {failures[first]}{more}; pass errors='nan' to get NaN rows instead"
    )
