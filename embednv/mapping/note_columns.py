"""What the map takes from the notes file(s): cluster term counts, known labels, hover texts.

Streamed, so the driver's memory does not grow with the notes' text: each file is read one
record batch at a time and joined to the map's ids (`annotations.aligned_batches`). The
texts file is read once when the map has at most `terms.VOCAB_SAMPLE` notes (the vocabulary is
then fitted on all of them, as one pass over everything would), else twice: a first pass keeps
the texts of a seeded random sample of VOCAB_SAMPLE map rows and fits the vocabulary on them,
a second counts every note's words against it. What is kept per note is small: a known label
as a 4-byte code (`known_labels.py`) and, only with --show-text, the hover's first 300
characters. Note text is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv.mapping.annotations import IdIndex, aligned_batches
from embednv.mapping.known_labels import KnownLabels
from embednv.mapping.render_html import HOVER_TEXT_CHARS
from embednv.mapping.terms import VOCAB_SAMPLE, TermCounts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoteColumns:
    """Per-map-row columns from the notes; None where not asked for."""

    term_counts: TermCounts | None
    known: KnownLabels | None  # the --labels-column value of each map row
    hover: np.ndarray | None  # (n,) object, with --show-text: the start of each note (str or None), for map.html


def read_note_columns(
    ids: pa.Array,
    id_column: str,
    cluster_labels: np.ndarray,
    k: int,
    texts: tuple[str | Path, str] | None = None,
    labels: tuple[str | Path, str] | None = None,
    show_text: bool = False,
    seed: int = 0,
    vocab_sample: int = VOCAB_SAMPLE,
) -> NoteColumns:
    """Stream `texts` (path, column) and `labels` (path, column) aligned to `ids` (the map's rows)."""
    if texts is None and labels is None:
        return NoteColumns(None, None, None)
    index = IdIndex(ids)
    n = index.n
    known = hover = counts = None
    if labels is not None:
        known = KnownLabels(n)
    if texts is not None and show_text:
        hover = np.full(n, None, dtype=object)
    same_file = texts is not None and labels is not None and str(texts[0]) == str(labels[0])

    if texts is not None:
        path, column = texts
        columns = [column] + ([labels[1]] if same_file else [])
        everyone = n <= vocab_sample
        chosen = None if everyone else _sample(n, vocab_sample, seed)
        sample_rows, sample_texts = [], []
        for rows, batch in aligned_batches(path, id_column, columns, index):
            text = batch.column(column).to_pylist()
            if same_file:
                known.put(rows, batch.column(labels[1]))
            if hover is not None:
                hover[rows] = [_hover_start(t) for t in text]
            picked = np.arange(len(rows)) if everyone else np.flatnonzero(np.isin(rows, chosen, kind="sort"))
            sample_rows.append(rows[picked])
            sample_texts += [text[i] for i in picked]
        rows_sampled = np.concatenate(sample_rows) if sample_rows else np.zeros(0, np.int64)
        # min_df counts the sampled rows that have no text too, as a pass over all rows did.
        sample_size = n if everyone else vocab_sample
        missing = sample_size - len(sample_texts)
        counts = TermCounts(sample_texts + [None] * missing, k)
        if everyone:
            counts.add(sample_texts, cluster_labels[rows_sampled])
            counts.n_notes = n
        else:
            log.info("terms: vocabulary from %d random notes of %d; counting every note", vocab_sample, n)
            del sample_texts
            for rows, batch in aligned_batches(path, id_column, [column], index):
                counts.add(batch.column(column).to_pylist(), cluster_labels[rows])
            counts.n_notes = n
    if labels is not None and not same_file:
        for rows, batch in aligned_batches(labels[0], id_column, [labels[1]], index):
            known.put(rows, batch.column(labels[1]))
    return NoteColumns(term_counts=counts, known=known, hover=hover)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    """`size` map rows drawn without replacement, the same for the same seed: held as rows, not a mask of n."""
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _hover_start(text: str | None) -> str | None:
    """The note's first words, enough for map.html's 300-character hover (its cut is the same as on the whole)."""
    if not text:
        return text
    return " ".join(str(text).split(maxsplit=HOVER_TEXT_CHARS + 1)[: HOVER_TEXT_CHARS + 1])
