"""The model stage: a window of tokenized notes in, one unit vector per note out.

`EmbedWorker` is what Ray runs in each actor (one per GPU). It is a plain callable on a
pyarrow table, so tests drive it without Ray. Within its window, `embed_notes` length-sorts
every token window of every note into token-budgeted micro-batches (`batching`), embeds them,
splits a batch in two on out-of-memory until single windows, and combines each note's windows
into one vector (`chunking.combine_chunks`). A note that cannot be embedded becomes an error
row. `embednv.Embedder` (the Python API) calls the same `embed_notes`. The instruction comes
with each window (a column the tokenizer stage adds), not with the model: one load serves all.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from embednv.columns import (
    EMBEDDING,
    ERROR,
    INSTRUCTION,
    N_CHUNKS,
    N_TOKENS,
    NOTE_TOKENS,
    PADDED,
    WINDOW_TOKENS,
    WINDOWS,
)
from embednv.embed.batching import plan_batches
from embednv.embed.chunking import combine_chunks
from embednv.models.base import ModelRef
from embednv.runtime import usable_cpus

log = logging.getLogger(__name__)

WindowsCallback = Callable[[int, int], None]  # (token windows done, windows in the call)


class EmbedWorker:
    """Loads the encoder once (actor start-up) and embeds every window of rows it is given."""

    on_windows: WindowsCallback | None = None  # told how far each call is (the Ray actor reports it)

    def __init__(self, ref: ModelRef, device: str, dtype: str, batch_tokens: int, threads: int | None = None):
        from embednv.models import registry

        if device == "cpu":
            import torch

            # Ray sets OMP_NUM_THREADS to the actor's num_cpus (1): use the node's cores instead.
            torch.set_num_threads(threads or usable_cpus())
        self.encoder = registry.load_encoder(ref, device, dtype)
        self.dim = ref.dim
        self.batch_tokens = batch_tokens

    @classmethod
    def from_encoder(cls, encoder, batch_tokens: int) -> EmbedWorker:
        """A worker around an encoder already loaded (an `Embedder`'s): scripts that run the
        actor's steps in-process without loading the model twice (bench/nvembed_device.py)."""
        worker = cls.__new__(cls)
        worker.encoder, worker.dim, worker.batch_tokens = encoder, encoder.dim, batch_tokens
        return worker

    def __call__(self, table: pa.Table) -> pa.Table:
        valid = np.asarray(table.column(ERROR).is_null().to_pylist(), dtype=bool)
        windows = table.column(WINDOWS).combine_chunks()
        counts = np.diff(windows.offsets.to_numpy())  # windows per note
        flat = windows.flatten()  # one entry per window
        offsets, values = flat.offsets.to_numpy(), flat.flatten().to_numpy()
        sequences = [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        starts = np.concatenate([[0], np.cumsum(counts)])
        # Rows that already carry an error come with no windows; embed_notes leaves them out.
        result = embed_notes(
            functools.partial(self.encoder.embed, instruction=window_instruction(table)),
            self.dim,
            [sequences[starts[r] : starts[r + 1]] for r in range(len(table))],
            self.batch_tokens,
            on_windows=self.on_windows,
        )

        errors = table.column(ERROR).to_pylist()
        for row, reason in result.failures.items():
            if valid[row]:
                errors[row], valid[row] = reason, False
        embeddings = pa.FixedSizeListArray.from_arrays(
            pa.array(result.vectors.reshape(-1)), self.dim, mask=pa.array(~valid)
        )
        _return_freed_memory()
        return (
            table.drop_columns([c for c in (WINDOWS, ERROR, NOTE_TOKENS, INSTRUCTION) if c in table.column_names])
            .append_column(ERROR, pa.array(errors, pa.string()))
            .append_column(EMBEDDING, embeddings)
            .append_column(N_TOKENS, table.column(NOTE_TOKENS))
            .append_column(N_CHUNKS, pa.array(counts.astype(np.int32)))
            .append_column(PADDED, pa.array(result.padded_tokens))
            .append_column(WINDOW_TOKENS, pa.array(result.window_tokens))
        )


def window_instruction(table: pa.Table) -> str:
    """The instruction a window's rows were tokenized with (`tokenize_table`); "" without the column."""
    if INSTRUCTION not in table.column_names:
        return ""
    found = set(table.column(INSTRUCTION).to_pylist())
    if len(found) > 1:
        raise ValueError(f"A window holds rows of {len(found)} instructions; embed each instruction's rows apart")
    return found.pop() if found else ""


@dataclass(frozen=True)
class EmbeddedNotes:
    """What `embed_notes` returns; arrays are indexed by note, in the caller's order."""

    vectors: np.ndarray  # (n_notes, dim) float32, unit rows; zeros where the note failed
    failures: dict[int, str]  # note index -> why it has no vector (no windows, out of memory)
    padded_tokens: np.ndarray  # (n_notes,) int64: tokens the model processed for it, padding included
    window_tokens: np.ndarray  # (n_notes,) int64: its real tokens, summed over its windows
    oom_splits: int  # micro-batches halved after an out-of-memory error

    @property
    def padding_efficiency(self) -> float:
        padded = int(self.padded_tokens.sum())
        return int(self.window_tokens.sum()) / padded if padded else 1.0


def embed_notes(
    embed: Callable[[Sequence], np.ndarray],
    dim: int,
    notes: Sequence[Sequence[Sequence[int]]],
    batch_tokens: int,
    on_windows: WindowsCallback | None = None,
) -> EmbeddedNotes:
    """Embed each note's token windows and pool them into one unit vector per note.

    The one loop behind both the Ray actor (`EmbedWorker`) and `embednv.Embedder`: every window
    of every note is length-sorted into micro-batches of at most `batch_tokens` padded tokens
    (`plan_batches`), embedded with `embed` (an `Encoder.embed`), a batch that runs out of
    memory is halved (`embed_splitting`), and a note's windows are combined by their
    token-weighted mean (`combine_chunks`). A note with no windows, or with a window that does
    not fit even alone, is listed in `failures` instead of stopping the others. `on_windows`, if
    given, is called with (0, windows) first and (windows done, windows) after every batch: one
    long note can be thousands of windows and minutes of work, which should not look like a stall.
    """
    counts = np.fromiter((len(windows) for windows in notes), dtype=np.int64, count=len(notes))
    sequences = [window for windows in notes for window in windows]
    lengths = [len(s) for s in sequences]
    vectors = np.zeros((len(sequences), dim), np.float32)
    padded = np.zeros(len(sequences), np.int64)
    failed: dict[int, str] = {}
    splits = done = 0
    if on_windows is not None:
        on_windows(0, len(sequences))
    for batch in plan_batches(lengths, batch_tokens):
        padded[batch.indices] = batch.width
        splits += embed_splitting(embed, sequences, batch.indices, vectors, failed)
        done += len(batch.indices)
        if on_windows is not None:
            on_windows(done, len(sequences))

    out = np.zeros((len(notes), dim), np.float32)
    note_padded = np.zeros(len(notes), np.int64)
    note_real = np.zeros(len(notes), np.int64)
    failures: dict[int, str] = {}
    start = 0
    for note, count in enumerate(counts.tolist()):
        span = range(start, start + count)
        start += count
        if count == 0:
            failures[note] = "no token windows"
            continue
        note_padded[note] = padded[span.start : span.stop].sum()
        note_real[note] = sum(lengths[span.start : span.stop])
        problems = [failed[i] for i in span if i in failed]
        if problems:
            failures[note] = problems[0]
            continue
        out[note] = (
            vectors[span.start]
            if count == 1
            else combine_chunks(vectors[span.start : span.stop], lengths[span.start : span.stop])
        )
    return EmbeddedNotes(out, failures, note_padded, note_real, splits)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


def _return_freed_memory() -> None:
    """Give freed heap pages back to the OS after each window.

    In a Ray actor, Ray's threads and ours allocate from several glibc arenas that keep freed
    pages. Measured on 300k sample notes (bench/scale.py's model): the actor's heap peaked at
    694 MiB with this, 820 MiB without. It does not stop all growth: see docs/benchmarks.md.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def embed_splitting(
    embed: Callable[[Sequence], np.ndarray],
    sequences: Sequence,
    indices: list[int],
    out: np.ndarray,
    failed: dict[int, str],
) -> int:
    """Embed `sequences[indices]` into `out`; on out-of-memory, halve the batch and retry.

    Down to a single window: one that still does not fit is recorded in `failed` with the
    reason, so the note becomes an error row and the job goes on. Returns how many times a
    batch was halved.
    """
    try:
        out[indices] = embed([sequences[i] for i in indices])
        return 0
    except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
        if not is_out_of_memory(error):
            raise
    _release_cached_memory()
    if len(indices) == 1:
        failed[indices[0]] = f"does not fit in accelerator memory ({len(sequences[indices[0]])} tokens in one window)"
        return 0
    log.warning("out of memory on a batch of %d windows; splitting it in two", len(indices))
    half = len(indices) // 2
    return (
        1
        + embed_splitting(embed, sequences, indices[:half], out, failed)
        + embed_splitting(embed, sequences, indices[half:], out, failed)
    )


def is_out_of_memory(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except ImportError:
        pass
    return isinstance(error, (MemoryError, RuntimeError)) and "out of memory" in str(error).lower()


def _release_cached_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
