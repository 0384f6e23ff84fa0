"""The words that set each cluster apart: class-based TF-IDF over the notes' texts.

c-TF-IDF (Grootendorst, BERTopic 2022) treats all notes of a cluster as one document:
weight(t, c) = tf(t, c) * log(1 + A / f(t)), where tf is the L1-normalised count of term t in
cluster c, f(t) is t's count over all clusters and A the average number of words per cluster.
Words frequent in every cluster score low even where they are the most frequent.
Only counts leave this module; note text is never logged.
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


def cluster_terms(
    texts: Sequence[str | None],
    labels: np.ndarray,
    k: int,
    n_terms: int = N_TERMS,
    min_df: int | Literal["auto"] = "auto",
) -> list[list[str]]:
    """Top `n_terms` c-TF-IDF terms for each of the `k` clusters (empty lists if no vocabulary).

    `texts[i]` belongs to cluster `labels[i]`; missing texts (None) count as empty notes.
    """
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    assert len(texts) == len(labels), f"{len(texts)} texts for {len(labels)} labels"
    min_df = auto_min_df(len(texts)) if min_df == "auto" else min_df
    stop_words = sorted(ENGLISH_STOP_WORDS.union(CLINICAL_STOP_WORDS))
    vectorizer = CountVectorizer(stop_words=stop_words, token_pattern=TOKEN_PATTERN, min_df=min_df)
    try:
        counts = vectorizer.fit_transform(t or "" for t in texts)  # (n, V)
    except ValueError as e:  # empty vocabulary: too few or too short texts
        log.warning("no cluster terms: %s", e)
        return [[] for _ in range(k)]
    n = len(labels)
    membership = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))  # (k, n)
    weights = c_tf_idf(membership @ counts).toarray()  # (k, V)
    vocab = vectorizer.get_feature_names_out()
    log.info("c-TF-IDF over %d texts, vocabulary %d (min_df %d)", n, len(vocab), min_df)
    top = []
    for row in weights:
        best = np.argsort(-row, kind="stable")[:n_terms]
        top.append([str(vocab[j]) for j in best if row[j] > 0])
    return top
