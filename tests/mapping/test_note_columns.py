"""Streamed texts and labels: the same terms as one pass over every text, labels aligned by id, batch by batch."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from embednv.errors import MapError
from embednv.mapping.annotations import IdIndex, aligned_batches
from embednv.mapping.note_columns import read_note_columns
from embednv.mapping.render_html import _short_text
from embednv.mapping.terms import CLINICAL_STOP_WORDS, TOKEN_PATTERN, auto_min_df, c_tf_idf

MTSAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mtsamples.parquet"


def one_pass_terms(texts, labels, k, n_terms=10):
    """The terms as the map computed them before streaming: every text in memory, one fit_transform."""
    stop = sorted(ENGLISH_STOP_WORDS.union(CLINICAL_STOP_WORDS))
    vectorizer = CountVectorizer(stop_words=stop, token_pattern=TOKEN_PATTERN, min_df=auto_min_df(len(texts)))
    counts = vectorizer.fit_transform(t or "" for t in texts)
    n = len(labels)
    weights = c_tf_idf(sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n)) @ counts).toarray()
    vocab = vectorizer.get_feature_names_out()
    return [[str(vocab[j]) for j in np.argsort(-row, kind="stable")[:n_terms] if row[j] > 0] for row in weights]


@pytest.mark.skipif(not MTSAMPLES.is_file(), reason="../shared/data/mtsamples.parquet is absent")
def test_streamed_terms_equal_one_pass_over_every_mtsamples_text_and_stay_close_with_a_small_vocabulary_sample():
    table = pq.read_table(MTSAMPLES, columns=["note_id", "transcription", "medical_specialty"])
    values = sorted(set(table.column("medical_specialty").to_pylist()))
    labels = np.array([values.index(v) for v in table.column("medical_specialty").to_pylist()])
    ids = table.column("note_id").combine_chunks()
    before = one_pass_terms(table.column("transcription").to_pylist(), labels, len(values))
    # The map's rows in another order than the file's: the join, not the file order, places each note.
    order = np.random.default_rng(1).permutation(len(ids))
    streamed = read_note_columns(
        ids.take(pa.array(order)),
        "note_id",
        labels[order],
        len(values),
        texts=(MTSAMPLES, "transcription"),
        labels=(MTSAMPLES, "medical_specialty"),
    )
    assert streamed.term_counts.top() == before  # 4,999 notes: the vocabulary is fitted on all of them
    assert streamed.known.values() == [table.column("medical_specialty")[int(i)].as_py() for i in order]
    # Vocabulary from 1,000 of the 4,999 notes: every specialty keeps its three top terms (the name; the order
    # of two may swap), and 98% of its top ten.
    sampled = read_note_columns(
        ids, "note_id", labels, len(values), texts=(MTSAMPLES, "transcription"), vocab_sample=1000
    ).term_counts.top()
    assert [set(t[:3]) for t in sampled] == [set(t[:3]) for t in before]
    assert np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(sampled, before)]) >= 0.98


def test_groups_sum_their_clusters_counts(tmp_path):
    words = ["stent atrial", "femur fracture", "seizure migraine", "polyp colonoscopy"]
    texts = [words[i % 4] + " common words here" for i in range(40)]
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": np.arange(40), "text": texts}), path)
    labels = np.arange(40) % 4
    counts = read_note_columns(pa.array(np.arange(40)), "note_id", labels, 4, texts=(path, "text")).term_counts
    parent = np.array([0, 0, 1, 1])
    assert counts.top(parent=parent) == one_pass_terms(texts, parent[labels], 2)


def test_batches_are_joined_by_id_first_row_wins_and_missing_ids_are_counted(tmp_path, caplog):
    path = tmp_path / "notes.csv"
    path.write_text("note_id,text,dept\n3,three,a\n1,one,b\n3,dup,c\n7,not on the map,d\n")
    index = IdIndex(pa.array([1, 2, 3], pa.int32()))  # the map's id type differs from the file's int64
    got = list(aligned_batches(path, "note_id", ["text"], index, batch_rows=1))
    assert [(rows.tolist(), b.column("text").to_pylist()) for rows, b in got] == [([2], ["three"]), ([0], ["one"])]
    assert "1 of 3 map ids have no 'text'" in caplog.text
    known = read_note_columns(pa.array([1, 2, 3]), "note_id", np.zeros(3, int), 1, labels=(path, "dept")).known.values()
    assert known == ["b", None, "a"]
    with pytest.raises(MapError, match="ids in 'note_id' are int64, the embeddings' are binary"):
        list(aligned_batches(path, "note_id", ["text"], IdIndex(pa.array([b"\x00"], pa.binary()))))


def test_id_index_finds_first_rows_and_skips_nulls_and_strangers():
    ints = IdIndex(pa.array([5, 3, 5, -2]))
    assert ints.positions(pa.array([5, None, 3, 4, -2, 5]), "f", "id").tolist() == [0, -1, 1, -1, 3, 0]
    strings = IdIndex(pa.array(["b", "a", "", "é"], pa.large_string()))
    assert strings.positions(pa.array(["é", "a", None, "c", ""]), "f", "id").tolist() == [3, 1, -1, -1, 2]


@pytest.mark.parametrize("n", [1, 2, 7, 1_000, 4_097])
def test_id_index_agrees_with_a_dictionary_of_first_rows(n):
    rng = np.random.default_rng(n)
    ids = rng.integers(-(2**62), 2**62, n // 2 + 1)[rng.integers(0, n // 2 + 1, n)]  # repeats, extremes
    first = {}
    for row, i in enumerate(ids.tolist()):
        first.setdefault(i, row)
    query = np.concatenate([ids, rng.integers(-(2**62), 2**62, 50), [ids.min() - 1, ids.max() + 1]])
    got = IdIndex(pa.array(ids)).positions(pa.array(query), "f", "id")
    assert got.tolist() == [first.get(q, -1) for q in query.tolist()]


def test_hover_texts_are_the_same_as_from_the_whole_note(tmp_path):
    long = " ".join(f"word{i}" for i in range(2_000))
    texts = [long, "  short\n note ", None, "x" * 1_000]
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"note_id": ["a", "b", "c", "d"], "text": texts}), path)
    ids = pa.array(["d", "c", "b", "a"])
    hover = read_note_columns(ids, "note_id", np.zeros(4, int), 1, texts=(path, "text"), show_text=True).hover
    assert [_short_text(h) for h in hover] == [_short_text(t) for t in reversed(texts)]
