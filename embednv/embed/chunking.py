"""Split a tokenized note that exceeds the model window into overlapping windows.

Every window keeps the note's fixed head (BOS/CLS and the instruction) and tail (EOS/SEP), so
each chunk is a valid model input on its own. Chunk embeddings are later combined by a
token-weighted mean (see `combine_chunks`), so a long note is never silently truncated.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def split_into_windows(ids: Sequence[int], max_tokens: int, n_head: int, n_tail: int, overlap: int) -> list[list[int]]:
    """Return `ids` itself when it fits, else overlapping windows of at most `max_tokens`.

    `n_head`/`n_tail` are how many leading/trailing ids are fixed (special tokens and the
    instruction); they are repeated in every window. Consecutive windows share `overlap`
    body tokens so no sentence is only ever seen cut at a window edge.
    """
    if len(ids) <= max_tokens:
        return [list(ids)]
    head, body, tail = list(ids[:n_head]), ids[n_head : len(ids) - n_tail], list(ids[len(ids) - n_tail :])
    room = max_tokens - n_head - n_tail
    if room <= overlap:
        raise ValueError(
            f"max_tokens={max_tokens} leaves {room} body tokens per window after {n_head} head and "
            f"{n_tail} tail tokens; it must exceed the overlap ({overlap})"
        )
    stride = room - overlap
    windows = []
    for start in range(0, len(body), stride):
        windows.append(head + list(body[start : start + room]) + tail)
        if start + room >= len(body):
            break
    return windows


def combine_chunks(chunk_vectors: np.ndarray, chunk_lengths: Sequence[int]) -> np.ndarray:
    """Token-weighted mean of L2-normalised chunk vectors, re-normalised to unit length.

    `chunk_vectors` is `(n_chunks, dim)`; weights are each chunk's token count, so a short
    final window counts for less than a full one.
    """
    weights = np.asarray(chunk_lengths, dtype=np.float64)[:, None]
    mean = (chunk_vectors.astype(np.float64) * weights).sum(axis=0) / weights.sum()
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
