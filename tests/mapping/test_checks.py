"""Inputs the map cannot draw are refused in one line, before PCA, k-means and t-SNE spend time on them,
and inputs it can draw (few distinct vectors, very few notes) never crash it."""

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from embednv.errors import MapError
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.tsne_params import TSNEParams

FAST_TSNE = TSNEParams(early_exaggeration_iter=100, n_iter=150)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _unit(rng, n, dim=32):
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _config(emb_dir, out_dir, **kwargs):
    return MapConfig(
        emb_dir=emb_dir, out_dir=out_dir, **{"tsne": FAST_TSNE, "backend": "cpu", "placement": "local", **kwargs}
    )


def test_identical_embeddings_exit_2_in_one_line_and_leave_nothing(tmp_path, shards):
    """One templated note embedded 50 times: openTSNE used to segfault (exit 139) on it."""
    v = _unit(np.random.default_rng(0), 1)[0]
    emb = shards(tmp_path / "emb", np.arange(50), np.tile(v, (50, 1)))
    out = tmp_path / "map"
    command = [sys.executable, "-m", "embednv.cli", "map", str(emb), "--out", str(out), "--backend", "cpu"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("embednv: ")]
    assert (result.returncode, errors) == (
        2,
        [
            "error: all 50 embeddings are the same vector (RMS distance to their mean 0, under 0.0001, "
            "which float32 cannot tell from equal): nothing to map; are the notes one template?"
        ],
    ), result.stderr
    assert "% of the variance" not in result.stderr  # refused before PCA's eigensolver and its log line
    assert not out.exists()


def test_near_identical_embeddings_are_refused(tmp_path, shards):
    """Float32 rounding noise around one vector (what re-embedding one note gives) is no map either."""
    rng = np.random.default_rng(1)
    x = np.tile(_unit(rng, 1)[0], (40, 1)) + 1e-7 * rng.standard_normal((40, 32))
    emb = shards(tmp_path / "emb", np.arange(40), x)
    with pytest.raises(
        MapError, match=r"^all 40 embeddings are the same vector \(RMS distance to their mean [1-9]e-07, under 0.0001"
    ):
        run_map(_config(emb, tmp_path / "map"))
    assert not (tmp_path / "map").exists()


@pytest.mark.parametrize(
    "kind, value, message",
    [
        ("nan", np.nan, "1 NaN or inf (note_id 'n-7')"),
        ("inf", np.inf, "1 NaN or inf (note_id 'n-7')"),
        ("zero", 0.0, "1 all zeros (note_id 'n-7')"),
    ],
)
def test_a_vector_that_is_no_direction_is_refused_with_its_id(tmp_path, shards, kind, value, message):
    x = _unit(np.random.default_rng(2), 40)
    if kind == "inf":
        x[7, 3] = value
    else:
        x[7] = value
    emb = shards(tmp_path / "emb", [f"n-{i}" for i in range(40)], x)
    with pytest.raises(MapError) as caught:
        run_map(_config(emb, tmp_path / "map"))
    assert str(caught.value) == (
        f"{emb}: 1 of 40 embeddings are not directions: {message}; "
        "a map needs every vector finite and non-zero: re-embed those notes or leave them out"
    )
    assert not (tmp_path / "map").exists()


def test_many_bad_vectors_are_counted_and_the_first_named(tmp_path, shards):
    x = _unit(np.random.default_rng(3), 60)
    x[[4, 9, 14, 19, 24, 29, 34]] = np.nan  # 7 across the 3 shards: 5 named, 2 counted
    x[[50, 55]] = 0.0
    emb = shards(tmp_path / "emb", np.arange(100, 160), x)
    with pytest.raises(MapError) as caught:
        run_map(_config(emb, tmp_path / "map"))
    assert (
        "9 of 60 embeddings are not directions: 7 NaN or inf (note_id 104, 109, 114, 119, 124 and 2 more); "
        "2 all zeros (note_id 150, 155)"
    ) in str(caught.value)


@pytest.fixture
def with_nan(tmp_path, shards):
    """30 embeddings, one NaN: an option refused with its own error was checked before any vector was read."""
    x = _unit(np.random.default_rng(4), 30)
    x[3] = np.nan
    return shards(tmp_path / "emb", np.arange(30), x)


@pytest.mark.parametrize("clusters", [30, 31, 1])
def test_clusters_out_of_range_for_n_is_refused_before_reading_vectors(tmp_path, with_nan, clusters):
    """--clusters 30 for 30 notes used to fail after t-SNE, in the silhouette."""
    expected = rf"^--clusters must be in 2\.\.29 \(fewer than the 30 embeddings\), got {clusters}$"
    with pytest.raises(MapError, match=expected):
        run_map(_config(with_nan, tmp_path / "map", clusters=clusters))
    assert not (tmp_path / "map").exists()


@pytest.mark.parametrize("perplexity", [0, -5, math.nan, math.inf, 9.7])
def test_perplexity_out_of_range_for_n_is_refused_before_reading_vectors(tmp_path, with_nan, perplexity):
    """3 x perplexity neighbours must exist among the other 29 notes: at most 9.667."""
    config = _config(with_nan, tmp_path / "map", tsne=dataclasses.replace(FAST_TSNE, perplexity=perplexity))
    expected = rf"^--perplexity must be above 0 and at most 9\.667 for 30 embeddings .* got {perplexity}$"
    with pytest.raises(MapError, match=expected):
        run_map(config)
    assert not (tmp_path / "map").exists()


def test_the_shared_compute_refuses_too(tmp_path, with_nan):
    """compute() is what a GPU worker runs (ray_stage): it checks for itself, not only run_map."""
    from embednv.mapping.backends import CpuBackend
    from embednv.mapping.compute import HeavyRequest, compute, here

    request = HeavyRequest.of(_config(with_nan, tmp_path / "map"))
    with pytest.raises(MapError, match="1 NaN or inf"):
        compute(request, CpuBackend(), here("local"))
    with pytest.raises(MapError, match="--clusters must be in 2..29"):
        compute(dataclasses.replace(request, clusters=30), CpuBackend(), here("local"))


def test_two_distinct_vectors_make_two_clusters_and_a_true_variance_figure(tmp_path, shards, caplog):
    """Two templates, 30 notes each (rank 1 once centred): auto k is 5, but only 2 clusters can hold notes."""
    rng = np.random.default_rng(5)
    a, b = _unit(rng, 2, dim=64)
    emb = shards(tmp_path / "emb", np.arange(60), np.stack([a if i % 2 else b for i in range(60)]))
    with caplog.at_level(logging.INFO, logger="embednv"):
        result = run_map(_config(emb, tmp_path / "map"))
    assert result.k == 2
    clusters = pq.read_table(tmp_path / "map" / "clusters.parquet", filters=[("level", "=", "cluster")])
    assert clusters.column("size").to_pylist() == [30, 30]
    points = pq.read_table(tmp_path / "map" / "map.parquet").to_pydict()
    assert {c for i, c in zip(points["note_id"], points["cluster"]) if i % 2} in ({0}, {1})
    manifest = json.loads((tmp_path / "map" / "_manifest.json").read_text())
    assert (manifest["clusters"]["k"], manifest["clusters"]["k_asked"]) == (2, 5)
    assert "PCA 64 -> 50 dims keeps 100.0% of the variance" in caplog.messages
    assert "k-means: only 2 of the 5 clusters hold notes (the rest of the notes repeat vectors)" in caplog.messages


def test_ten_notes_get_a_perplexity_their_neighbours_allow(tmp_path, shards):
    """The smallest map: auto perplexity is (n - 1) // 3 = 3, and the manifest says what t-SNE was given."""
    emb = shards(tmp_path / "emb", np.arange(10), _unit(np.random.default_rng(6), 10))
    result = run_map(_config(emb, tmp_path / "map"))
    tsne = json.loads((tmp_path / "map" / "_manifest.json").read_text())["tsne"]
    assert (result.n, tsne["perplexity"], tsne["perplexities"]) == (10, 3, [3])


def test_silhouette_of_a_sample_holding_one_cluster_is_none():
    """A lone outlier outside the sample: sklearn's silhouette_score raised, after the whole t-SNE."""
    from embednv.mapping.metrics import silhouette

    x = np.random.default_rng(7).standard_normal((100, 5))
    labels = np.zeros(100, dtype=np.int32)
    labels[np.random.RandomState(0).permutation(100)[-1]] = 1  # the one row the seed-0 sample of 10 leaves out
    assert silhouette(x, labels, sample=10, seed=0) is None
    assert silhouette(x, labels, sample=100, seed=0) is not None


def test_pca_init_refuses_points_that_all_start_at_one_place():
    """openTSNE segfaults on an initialisation without extent; the shared path never hands it one."""
    from embednv.mapping.tsne import pca_init

    with pytest.raises(MapError, match="all 20 points start at one place"):
        pca_init(np.ones((20, 5)))
