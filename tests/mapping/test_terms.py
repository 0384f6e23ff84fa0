import numpy as np
import scipy.sparse as sp

from embednv.mapping.terms import auto_min_df, c_tf_idf, cluster_terms


def test_c_tf_idf_matches_the_bertopic_formula():
    counts = sp.csr_matrix(np.array([[4, 0, 2], [1, 3, 2]]))
    w = c_tf_idf(counts).toarray()
    avg = counts.sum() / 2  # A: average words per class
    idf = np.log(1 + avg / np.array([5, 3, 4]))
    tf = np.array([[4, 0, 2], [1, 3, 2]]) / np.array([[6], [6]])
    assert np.allclose(w, tf * idf)


def test_planted_topic_words_top_their_clusters_and_numbers_never_do():
    rng = np.random.default_rng(0)
    topics = {0: ["stent", "atrial"], 1: ["femur", "fracture"], 2: ["seizure", "migraine"]}
    texts, labels = [], []
    for i in range(300):
        c = i % 3
        words = ["patient", "history", "the", "and", "42", "10mg"] * 3 + list(rng.choice(topics[c], 4))
        texts.append(" ".join(rng.permutation(words)))
        labels.append(c)
    texts[5] = None  # a note without text counts as empty
    top = cluster_terms(texts, np.array(labels), 3, n_terms=2)
    for c, words in topics.items():
        assert sorted(top[c]) == sorted(words)
    all_terms = {t for terms in cluster_terms(texts, np.array(labels), 3, n_terms=20) for t in terms}
    assert not any(ch.isdigit() for t in all_terms for ch in t)
    assert "the" not in all_terms and "patient" not in all_terms  # English and clinical stop words dropped


def test_no_vocabulary_gives_empty_term_lists():
    assert cluster_terms(["12 34", None], np.array([0, 1]), 2, min_df=1) == [[], []]


def test_auto_min_df():
    assert (auto_min_df(100), auto_min_df(20_000), auto_min_df(1_000_000)) == (2, 2, 100)
