"""embednv/shards.py: the embedding shards streamed a batch at a time, as unit vectors."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from shard_files import write_shards

from embednv.errors import InputError
from embednv.shards import iter_batches, open_shards, unit_vectors


def test_id_column_from_manifest_or_first_other_column(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    write_shards(tmp_path / "a", np.arange(10), x, id_column="doc", manifest=True)
    assert open_shards(tmp_path / "a").id_column == "doc"
    write_shards(tmp_path / "b", np.arange(10), x, id_column="mrn_note", manifest=False)
    found = open_shards(tmp_path / "b")
    assert (found.id_column, found.dim, found.n_rows, len(found.paths)) == ("mrn_note", 4, 10, 3)


def test_batches_are_unit_vectors_in_order(tmp_path):
    x = np.random.default_rng(1).standard_normal((25, 6)).astype(np.float32) * 5
    write_shards(tmp_path / "e", np.arange(25), x, n_shards=2)
    got_ids, got = [], []
    for ids, v in iter_batches(open_shards(tmp_path / "e"), batch_size=4, with_ids=True):
        assert len(v) <= 4
        got_ids += ids.to_pylist()
        got.append(v)
    v = np.concatenate(got)
    assert got_ids == list(range(25))
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    assert np.allclose(v, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6)


def test_unit_vectors_honour_slices_and_reject_nulls():
    flat = pa.array(np.arange(12, dtype=np.float32) + 1)
    col = pa.FixedSizeListArray.from_arrays(flat, 3).slice(2, 2)  # rows 2 and 3
    v = unit_vectors(col, 3)
    assert np.allclose(v[0], np.array([7, 8, 9]) / np.linalg.norm([7, 8, 9]))
    with pytest.raises(InputError, match="null"):
        unit_vectors(pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2)), 2)


def test_clear_errors_for_missing_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_shards(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No part-"):
        open_shards(tmp_path / "empty")
    x = np.ones((3, 2), np.float32)
    write_shards(tmp_path / "m", np.arange(3), x, n_shards=1)
    (tmp_path / "m" / "_manifest.json").write_text(json.dumps({"id_column": "wrong"}))
    with pytest.raises(InputError, match="wrong"):
        open_shards(tmp_path / "m")


def test_embeddings_pandas_wrote_as_lists_of_doubles(tmp_path):
    """Vectors another tool saved (pandas writes list<double>, not fixed-size float32) read the same."""
    x = np.random.default_rng(2).standard_normal((7, 5))
    (tmp_path / "pd").mkdir()
    frame = pd.DataFrame({"mrn": [f"N-{i}" for i in range(7)], "embedding": list(x)})
    frame.to_parquet(tmp_path / "pd" / "part-00000.parquet")
    found = open_shards(tmp_path / "pd")
    assert (found.id_column, found.dim, found.n_rows) == ("mrn", 5, 7)
    [(ids, v)] = list(iter_batches(found, batch_size=100, with_ids=True))
    assert ids.to_pylist() == [f"N-{i}" for i in range(7)]
    assert np.allclose(v, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6)

    ragged = pd.DataFrame({"mrn": ["a", "b"], "embedding": [np.ones(5), np.ones(4)]})
    ragged.to_parquet(tmp_path / "pd" / "part-00001.parquet")
    with pytest.raises(InputError, match=r"part-00001\.parquet: embeddings are not all 5-dimensional"):
        list(iter_batches(open_shards(tmp_path / "pd"), batch_size=100))
