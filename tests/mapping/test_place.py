"""Placing notes on a fitted map: the old points stay put, new ones land among their neighbours."""

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.neighbors import NearestNeighbors

from embednv.errors import ConfigError
from embednv.mapping.backends import CpuBackend
from embednv.mapping.cli import PLACE_METHODS, REFINE_ITER, SAMPLE_ABOVE, SAMPLE_SIZE
from embednv.mapping.metrics import knn_preservation
from embednv.mapping.place import METHODS, nearest_centroid, place, resolve_method
from embednv.mapping.refine import REFINE_ITER as REFINE_ITER_CORE
from embednv.mapping.refine import refine
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.sample import SAMPLE_ABOVE as SAMPLE_ABOVE_CORE
from embednv.mapping.sample import SAMPLE_SIZE as SAMPLE_SIZE_CORE
from embednv.mapping.sample import stratified_sample
from embednv.mapping.tsne import embed
from embednv.mapping.tsne_params import TSNEParams

FAST = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)


def separated(n: int, k: int = 4, dim: int = 20, seed: int = 0):
    """k far-apart Gaussian blobs in `dim` dimensions and the blob of each point."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 10
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    x, labels = separated(400)
    y, _ = embed(x[:300], FAST, CpuBackend(), seed=0)
    return x, labels, y


@pytest.mark.parametrize("method", ["opentsne", "knn"])
def test_placed_points_land_with_their_blob_and_the_map_does_not_move(fitted, method):
    x, labels, y = fitted
    before = y.copy()
    placed = place(x[:300], y, x[300:], method, seed=0, n_jobs=1)
    assert placed.shape == (100, 2) and placed.dtype == np.float32
    assert np.array_equal(y, before)  # bit-identical, not merely close
    nearest = NearestNeighbors(n_neighbors=1).fit(y).kneighbors(placed, return_distance=False)[:, 0]
    assert (labels[:300][nearest] == labels[300:]).all()


def test_placement_of_nothing_is_empty(fitted):
    x, _, y = fitted
    assert place(x[:300], y, x[:0], "opentsne").shape == (0, 2)


def test_nearest_centroid_is_the_direct_argmin():
    rng = np.random.default_rng(1)
    x, centroids = rng.standard_normal((500, 50)).astype(np.float32), rng.standard_normal((7, 50)).astype(np.float32)
    direct = np.linalg.norm(x[:, None, :] - centroids[None], axis=2).argmin(axis=1)
    assert np.array_equal(nearest_centroid(x, centroids), direct)


def test_method_follows_the_backend_and_bad_names_are_refused():
    assert resolve_method("auto", "cpu") == "opentsne" and resolve_method("auto", "cuml") == "knn"
    assert resolve_method("knn", "cpu") == "knn"
    with pytest.raises(ConfigError, match="Valid: auto, opentsne, knn"):
        resolve_method("umap", "cpu")
    with pytest.raises(ConfigError, match="CPU backend only"):
        resolve_method("opentsne", "cuml")
    assert PLACE_METHODS == METHODS and (SAMPLE_ABOVE, SAMPLE_SIZE) == (SAMPLE_ABOVE_CORE, SAMPLE_SIZE_CORE)
    assert REFINE_ITER == REFINE_ITER_CORE


def test_refinement_gives_placed_notes_their_own_neighbours_back():
    """Placed notes sit where their nearest fitted notes are and ignore each other; the optimisation over
    every note, from that layout, restores their neighbourhoods (the reason refine.py exists)."""
    x, _ = separated(3000, k=6, dim=50, seed=1)
    rows = np.sort(np.random.default_rng(0).choice(len(x), 300, replace=False))
    rest = np.setdiff1d(np.arange(len(x)), rows)
    y_fit, _ = embed(x[rows], FAST, CpuBackend(), 0)
    y = np.empty((len(x), 2), dtype=np.float32)
    y[rows], y[rest] = y_fit, place(x[rows], y_fit, x[rest], "knn")
    refined = refine(x, y, n_iter=150, n_jobs=1)
    assert refined.shape == y.shape and np.isfinite(refined).all()
    before, after = (knn_preservation(x, m, sample=500, seed=0) for m in (y, refined))
    assert after > before + 0.1, (before, after)


def test_stratified_sample_keeps_every_cluster_with_its_floor():
    labels = np.repeat([0, 1, 2, 3], [5000, 3000, 150, 7])
    rows = stratified_sample(labels, 1000, seed=0, floor=50)
    assert np.array_equal(rows, np.unique(rows))  # sorted, no row twice
    counts = np.bincount(labels[rows], minlength=4)
    assert counts[3] == 7 and counts[2] == 50  # all of a tiny cluster, the floor of a small one
    assert abs(counts[0] - 1000 * 5000 / 8157) <= 1 and abs(counts[1] - 1000 * 3000 / 8157) <= 1
    assert np.array_equal(rows, stratified_sample(labels, 1000, seed=0, floor=50))  # seeded


def test_sampled_map_places_every_note_once_and_keeps_every_cluster(planted, tmp_path):
    config = MapConfig(
        emb_dir=planted["emb_dir"],
        out_dir=tmp_path / "map",
        clusters=4,
        tsne=FAST,
        backend="cpu",
        seed=3,
        labels=planted["notes"],
        labels_column="medical_specialty",
        sample_above=300,
        sample_size=200,
    )
    result = run_map(config)
    table = pq.read_table(tmp_path / "map" / "map.parquet")
    ids = table.column("note_id").to_pylist()
    assert sorted(ids) == sorted(planted["ids"].to_pylist()) and len(set(ids)) == 600
    assert np.isfinite(table.column("x").to_numpy()).all()
    manifest = json.loads((tmp_path / "map" / "_manifest.json").read_text())
    sampled = manifest["sampled"]
    assert sampled["fitted"] + sampled["placed"] == 600 and 195 <= sampled["fitted"] <= 205
    assert sampled["method"] == "knn" and "place" in manifest["timings_s"]
    assert (
        sampled["refined"] == {"iterations": REFINE_ITER_CORE, "perplexity": 10.0} and "refine" in manifest["timings_s"]
    )
    assert result.metrics["nmi"] > 0.95  # the planted topics survive the sample
    unrefined = run_map(dataclasses.replace(config, out_dir=tmp_path / "unrefined", refine_iter=0))
    assert json.loads((tmp_path / "unrefined" / "_manifest.json").read_text())["sampled"]["refined"] is None
    assert unrefined.metrics["nmi"] > 0.95
    # The same corpus without sampling: a full fit, recorded as such.
    full = run_map(dataclasses.replace(config, out_dir=tmp_path / "full", sample_above=SAMPLE_ABOVE))
    assert json.loads((tmp_path / "full" / "_manifest.json").read_text())["sampled"] is None
    assert full.n == 600
