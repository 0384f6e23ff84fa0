"""The words that set each cluster apart: class-based TF-IDF over the notes' texts.

c-TF-IDF (Grootendorst, BERTopic 2022) treats all notes of a cluster as one document:
weight(t, c) = tf(t, c) * log(1 + A / f(t)), where tf is the L1-normalised count of term t in
cluster c, f(t) is t's count over all clusters and A the average number of words per cluster.
Words frequent in every cluster score low even where they are the most frequent.
Only counts leave this module; note text is never logged.

At scale the counts are accumulated batch by batch (`TermCounts`): the vocabulary is fitted
on a bounded random sample of the notes (all of them up to `VOCAB_SAMPLE`, so small corpora get
exactly the terms of one pass over everything), then every note's words are counted against it.
A fixed vocabulary rather than a HashingVectorizer because c-TF-IDF must name its terms, and a
hash cannot be turned back into a word; a word rarer than min_df in 20,000 random notes
(under ~1 in 10,000 notes) could not have passed min_df over all notes either, up to sampling noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

# Words of two or more letters: drops numbers, doses ("5mg"), dates, ids and one-letter tokens,
# which are frequent in clinical notes but say nothing about a cohort.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
N_TERMS = 10
# Notes the vocabulary is fitted on: ~80 MB of text held once at 4 KB a note, whatever n.
VOCAB_SAMPLE = 20_000
# Boilerplate of clinical notes (sides, units, titles): so common in every note that even
# c-TF-IDF ranks them first in loosely defined clusters, where they name nothing. Extend with care:
# a word here can never name a cluster.
CLINICAL_STOP_WORDS = (
    "patient",
    "patients",
    "history",
    "mg",
    "cm",
    "mm",
    "right",
    "left",
    "noted",
    "mr",
    "mrs",
    "ms",
    "dr",
)


def auto_min_df(n_docs: int) -> int:
    """Keep words found in at least max(2, n/10,000) notes: drops typos and names, bounds the vocabulary."""
    return max(2, math.ceil(n_docs / 10_000))


def c_tf_idf(counts):
    """c-TF-IDF weights from a (k, V) sparse matrix of term counts per cluster; returns (k, V) sparse."""
    from sklearn.preprocessing import normalize

    tf = normalize(counts.astype(np.float64), norm="l1", axis=1)
    term_totals = np.asarray(counts.sum(axis=0)).ravel()  # f(t), (V,)
    avg_words = counts.sum() / counts.shape[0]  # A
    idf = np.log1p(avg_words / np.maximum(term_totals, 1))
    return tf.multiply(idf[None, :]).tocsr()


def vectorizer(min_df: int):
    """The CountVectorizer of every term count here: two-letter words, English and clinical stop words out."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    stop_words = sorted(ENGLISH_STOP_WORDS.union(CLINICAL_STOP_WORDS))
    return CountVectorizer(stop_words=stop_words, token_pattern=TOKEN_PATTERN, min_df=min_df)


class TermCounts:
    """Term counts per cluster, (k, V), added to one batch of notes at a time over a fixed vocabulary."""

    def __init__(self, sample: Sequence[str | None], k: int, min_df: int | Literal["auto"] = "auto") -> None:
        """Fit the vocabulary on `sample` (None = an empty note); min_df "auto" is `auto_min_df(len(sample))`."""
        import scipy.sparse as sp

        self.k = k
        self.min_df = auto_min_df(len(sample)) if min_df == "auto" else min_df
        self._vectorizer = vectorizer(self.min_df)
        try:
            self._vectorizer.fit(t or "" for t in sample)
            self.vocab = self._vectorizer.get_feature_names_out()
        except ValueError as e:  # empty vocabulary: too few or too short texts
            log.warning("no cluster terms: %s", e)
            self.vocab = None
        self.counts = sp.csr_matrix((k, 0 if self.vocab is None else len(self.vocab)), dtype=np.int64)
        self.n_notes = 0

    def add(self, texts: Sequence[str | None], labels: np.ndarray) -> None:
        """Count the words of `texts`, note i in cluster `labels[i]`."""
        import scipy.sparse as sp

        assert len(texts) == len(labels), f"{len(texts)} texts for {len(labels)} labels"
        self.n_notes += len(texts)
        if self.vocab is None or not len(texts):
            return
        x = self._vectorizer.transform(t or "" for t in texts)  # (b, V)
        b = len(labels)
        membership = sp.csr_matrix((np.ones(b, np.int64), (labels, np.arange(b))), shape=(self.k, b))  # (k, b)
        self.counts = (self.counts + membership @ x).tocsr()

    def top(self, n_terms: int = N_TERMS, parent: np.ndarray | None = None) -> list[list[str]]:
        """Top `n_terms` c-TF-IDF terms per cluster, or per group when `parent[c]` is cluster c's group."""
        import scipy.sparse as sp

        counts = self.counts
        if parent is not None:  # a group's counts are its clusters' counts summed
            g = int(parent.max()) + 1
            counts = sp.csr_matrix((np.ones(self.k), (parent, np.arange(self.k))), shape=(g, self.k)) @ counts
        if self.vocab is None:
            return [[] for _ in range(counts.shape[0])]
        weights = c_tf_idf(counts).toarray()  # (k, V)
        log.info("c-TF-IDF over %d texts, vocabulary %d (min_df %d)", self.n_notes, len(self.vocab), self.min_df)
        return [
            [str(self.vocab[j]) for j in np.argsort(-row, kind="stable")[:n_terms] if row[j] > 0] for row in weights
        ]


def cluster_terms(
    texts: Sequence[str | None],
    labels: np.ndarray,
    k: int,
    n_terms: int = N_TERMS,
    min_df: int | Literal["auto"] = "auto",
) -> list[list[str]]:
    """Top `n_terms` c-TF-IDF terms for each of the `k` clusters (empty lists if no vocabulary).

    `texts[i]` belongs to cluster `labels[i]`; missing texts (None) count as empty notes. All
    texts at once: for notes held in memory; the map streams them through `TermCounts`.
    """
    counts = TermCounts(texts, k, min_df)
    counts.add(texts, np.asarray(labels))
    return counts.top(n_terms)
