"""Token-budgeted, length-bucketed micro-batches within one window of rows.

The embed stage receives a bounded window of notes (never the whole corpus), sorts their token
windows by length and cuts the sorted list into micro-batches whose padded size
(`longest sequence x batch size`) stays within `batch_tokens`. Sorting puts similar lengths
side by side, so little of each batch is padding; the budget keeps memory use flat whatever
the length mix. Callers restore the original order with the indices each batch carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class MicroBatch:
    indices: list[int]  # positions in the caller's sequence list, longest first
    width: int  # padded length: the longest sequence in the batch

    @property
    def padded_tokens(self) -> int:
        return self.width * len(self.indices)


def plan_batches(lengths: Sequence[int], batch_tokens: int, min_efficiency: float = 0.97) -> list[MicroBatch]:
    """Cut sequences into micro-batches of at most `batch_tokens` padded tokens.

    Longest first, so an out-of-memory error shows on the first batch rather than an hour in.
    A batch also closes when the next sequence would bring its real/padded ratio under
    `min_efficiency`: with a large budget, the long tail would otherwise pad a few long notes
    with many shorter ones. A single sequence longer than the budget gets a batch of its own
    (it must still be embedded). Every index appears in exactly one batch.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[MicroBatch] = []
    current: list[int] = []
    real = 0
    for index in order:
        if current:
            width = lengths[current[0]]  # sorted longest first: the first member fixes the width
            padded = width * (len(current) + 1)
            if padded > batch_tokens or real + lengths[index] < min_efficiency * padded:
                batches.append(MicroBatch(current, width))
                current, real = [], 0
        current.append(index)
        real += lengths[index]
    if current:
        batches.append(MicroBatch(current, lengths[current[0]]))
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[MicroBatch]) -> float:
    """Real tokens over padded tokens processed (1.0 means no padding at all)."""
    padded = sum(batch.padded_tokens for batch in batches)
    return sum(lengths) / padded if padded else 1.0
