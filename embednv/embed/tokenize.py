"""Note text to model inputs: one list of token-id windows per note, on CPU workers.

A model's input is `prefix + text + suffix` tokenized with the tokenizer's special tokens, as
its reference implementation does (NV-Embed-v2: `instruction + text + eos` with BOS; BERT-style
encoders: `[CLS] text [SEP]`). Notes longer than the window are split by `chunking`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from embednv.columns import ERROR, INSTRUCTION, NOTE_TOKENS, TEXT, WINDOWS
from embednv.embed.chunking import split_into_windows
from embednv.models import registry
from embednv.models.base import ModelRef


@dataclass(frozen=True)
class TokenizedNote:
    windows: list[list[int]]  # model inputs, each at most max_tokens ids
    n_tokens: int  # length of the whole note as the model tokenizes it, before windowing


class NoteTokenizer:
    """Wraps a Hugging Face fast tokenizer with the model's prompt template and window.

    `prefix` is prepended as text (an instruction such as `Instruct: ...\\nQuery: `), `suffix`
    appended as text (NV-Embed-v2 appends the EOS token's text). `n_head`/`n_tail` count the
    fixed ids at each end so that every window repeats them.
    """

    def __init__(
        self, hf_tokenizer: Any, max_tokens: int, prefix: str = "", suffix: str = "", overlap: int | None = None
    ):
        self.hf = hf_tokenizer
        self.max_tokens = max_tokens
        self.prefix = prefix
        self.suffix = suffix
        # 1/8 of the window, capped: enough context across a cut without much recomputation.
        self.overlap = overlap if overlap is not None else min(64, max_tokens // 8)
        lead, trail = special_token_counts(hf_tokenizer)
        self.n_head = lead + (len(hf_tokenizer.tokenize(prefix)) if prefix else 0)
        self.n_tail = trail + (len(hf_tokenizer.tokenize(suffix, add_special_tokens=False)) if suffix else 0)
        if self.n_head + self.n_tail + self.overlap >= max_tokens:
            raise ValueError(
                f"The instruction and special tokens take {self.n_head + self.n_tail} of max_tokens="
                f"{max_tokens}; raise --max-tokens or shorten the instruction"
            )

    def __call__(self, texts: Sequence[str]) -> list[TokenizedNote]:
        full = [self.prefix + text + self.suffix for text in texts]
        encoded = self.hf(full, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [
            TokenizedNote(split_into_windows(ids, self.max_tokens, self.n_head, self.n_tail, self.overlap), len(ids))
            for ids in encoded
        ]


def special_token_counts(hf_tokenizer: Any) -> tuple[int, int]:
    """How many special ids the tokenizer adds before and after a text (BERT: 1, 1; Llama: 1, 0)."""
    bare = hf_tokenizer("a", add_special_tokens=False)["input_ids"]
    full = hf_tokenizer("a", add_special_tokens=True)["input_ids"]
    for lead in range(len(full) - len(bare) + 1):
        if full[lead : lead + len(bare)] == bare:
            return lead, len(full) - lead - len(bare)
    raise ValueError("Cannot locate the text inside the tokenizer's special-token template")


@functools.lru_cache(maxsize=4)
def cached_hf_tokenizer(ref: ModelRef) -> Any:
    """One tokenizer per worker process and model: Ray reuses workers, so it loads once."""
    return registry.load_hf_tokenizer(ref)


@functools.lru_cache(maxsize=16)
def cached_note_tokenizer(ref: ModelRef, instruction: str) -> NoteTokenizer:
    """The model's template around `instruction`; every instruction shares the one loaded tokenizer."""
    hf = cached_hf_tokenizer(ref)
    return NoteTokenizer(hf, ref.max_tokens, prefix=instruction, suffix=registry.prompt_suffix(ref, hf))


# Notes per tokenizer call. A batch call holds every note's `Encoding` (ids, offsets, token
# strings: ~50 KB per note of the sample corpus) and its ids as Python ints until it returns;
# on a 5,000-row block that was ~240 MiB of short-lived heap per block (memray), and the embed
# actor's peak, on top of it, rose with the corpus (bench/scale.py: 672 MiB private at 30k
# notes, 763 at 300k). 256 notes bound the burst to ~12 MiB (peak 430 and 419 MiB) and still
# give the tokenizer's threads work.
TOKENIZE_NOTES = 256


def tokenize_table(table: pa.Table, ref: ModelRef, instruction: str) -> pa.Table:
    """CPU stage: add each note's token windows and length, and drop the text from the stream.

    Rows that already carry an error pass through with no windows. The text is dropped here
    so that note text (PHI) never travels further than the tokenizer. Notes are tokenized
    `TOKENIZE_NOTES` at a time, each slice's windows packed into Arrow before the next. The
    instruction goes along as a column (one dictionary entry, not a copy per row): the model
    stage reads it with each batch, so its encoder is loaded once whatever the instruction.
    """

    tokenizer = cached_note_tokenizer(ref, instruction)
    parts, n_tokens = [], []
    for start in range(0, len(table), TOKENIZE_NOTES):
        piece = table.slice(start, TOKENIZE_NOTES)
        valid = piece.column(ERROR).is_null().to_pylist()
        texts = [t for t, ok in zip(piece.column(TEXT).to_pylist(), valid) if ok]
        notes = iter(tokenizer(texts) if texts else [])
        windows = []
        for ok in valid:
            note = next(notes) if ok else TokenizedNote([], 0)
            windows.append(note.windows)
            n_tokens.append(note.n_tokens)
        parts.append(nested_int32(windows))
    windows = pa.concat_arrays(parts) if parts else nested_int32([])
    return (
        table.drop_columns([TEXT])
        .append_column(WINDOWS, windows)
        .append_column(NOTE_TOKENS, pa.array(n_tokens, pa.int64()))
        .append_column(INSTRUCTION, instruction_column(instruction, len(table)))
    )


def instruction_column(instruction: str, n_rows: int) -> pa.DictionaryArray:
    """`instruction` for `n_rows` rows, stored once."""
    indices = pa.array(np.zeros(n_rows, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([instruction], pa.string()))


def nested_int32(windows: list[list[list[int]]]) -> pa.Array:
    """list<list<int32>> from Python lists via offsets: several times faster than pa.array()."""
    chunks = [chunk for note in windows for chunk in note]
    inner = np.cumsum([0] + [len(c) for c in chunks], dtype=np.int32)
    outer = np.cumsum([0] + [len(note) for note in windows], dtype=np.int32)
    values = np.fromiter(itertools.chain.from_iterable(chunks), dtype=np.int32, count=int(inner[-1]))
    return pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, values))
