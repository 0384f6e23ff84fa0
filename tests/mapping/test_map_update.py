"""`embednv map --update`: new notes placed, changed ones placed again, gone ones removed, nobody else moves."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.neighbors import NearestNeighbors

from embednv.errors import MapError
from embednv.mapping.place import nearest_centroid
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.tsne_params import TSNEParams
from embednv.shards import unit_vectors

FAST = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)


def corpus(n: int, seed: int, dim: int = 48, k: int = 4):
    """Unit vectors in k well-separated topics (the same topics for every seed) and each one's topic."""
    centres = np.random.default_rng(99).standard_normal((k, dim)) * 3
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, k, n)
    x = centres[topics] + rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), topics


def read_map(out) -> dict:
    table = pq.read_table(out / "map.parquet").to_pydict()
    return {i: (x, y, c) for i, x, y, c in zip(table["note_id"], table["x"], table["y"], table["cluster"])}


@pytest.fixture
def updated(tmp_path, shards):
    x, topics = corpus(400, seed=1)
    ids = [f"n{i:04d}" for i in range(400)]
    emb, out = tmp_path / "emb", tmp_path / "map"
    shards(emb, pa.array(ids), x, n_shards=2)
    config = MapConfig(emb_dir=emb, out_dir=out, clusters=4, tsne=FAST, backend="cpu", seed=0)
    run_map(config)
    assert json.loads((emb / "_manifest.json").read_text())["maps"] == [str(out.resolve())]
    before = read_map(out)
    # The corpus grows and changes: 20 notes withdrawn, 10 re-embedded in another topic, 60 new.
    new_x, new_topics = corpus(60, seed=2)
    changed = list(range(20, 30))
    x2, topics2 = x.copy(), topics.copy()
    moved, moved_topics = corpus(10, seed=3)
    x2[changed], topics2[changed] = moved, moved_topics
    keep = np.r_[20:400]
    ids2 = [ids[i] for i in keep] + [f"new{i:03d}" for i in range(60)]
    x2, topics2 = np.concatenate([x2[keep], new_x]), np.concatenate([topics2[keep], new_topics])
    for old in emb.glob("part-*.parquet"):
        old.unlink()
    shards(emb, pa.array(ids2), x2, n_shards=3)
    import dataclasses

    result = run_map(dataclasses.replace(config, update=True))
    return {
        "out": out,
        "emb": emb,
        "before": before,
        "after": read_map(out),
        "ids": ids2,
        "x": x2,
        "topics": dict(zip(ids2, topics2)),
        "changed": {ids[i] for i in changed},
        "removed": set(ids[:20]),
        "new": {f"new{i:03d}" for i in range(60)},
        "result": result,
    }


def test_old_points_keep_their_coordinates_bit_for_bit(updated):
    before, after = updated["before"], updated["after"]
    stayed = set(before) - updated["removed"] - updated["changed"]
    assert len(stayed) == 370
    for i in stayed:
        assert after[i] == before[i], i  # float32 x, y and the cluster, exactly
    assert not updated["removed"] & set(after)
    assert sorted(after) == sorted(updated["ids"])  # every note of the embeddings once, no other
    table = pq.read_table(updated["out"] / "map.parquet")
    assert table.num_rows == 440 and table.column("note_id").to_pylist() == updated["ids"]  # shard order


def test_placed_notes_land_among_their_topic_with_the_nearest_centroid(updated):
    after, topics = updated["after"], updated["topics"]
    moved = updated["new"] | updated["changed"]
    stayed = [i for i in updated["ids"] if i not in moved]
    reference = np.array([after[i][:2] for i in stayed])
    placed = sorted(moved)
    nearest = (
        NearestNeighbors(n_neighbors=1)
        .fit(reference)
        .kneighbors(np.array([after[i][:2] for i in placed]), return_distance=False)[:, 0]
    )
    assert all(topics[stayed[j]] == topics[i] for i, j in zip(placed, nearest))
    # Cluster = nearest centroid of the saved basis, computed here directly from the vectors.
    state = np.load(updated["out"] / "_pca.npz")
    rows = [updated["ids"].index(i) for i in placed]
    unit = unit_vectors(pa.array(list(updated["x"][rows])), updated["x"].shape[1])
    projected = (unit - state["mean"].astype(np.float32)) @ state["components"].T
    assert [after[i][2] for i in placed] == nearest_centroid(projected, state["centroids"]).tolist()
    groups = pq.read_table(updated["out"] / "map.parquet").to_pydict()
    assert groups["group"] == [int(state["parent"][c]) for c in groups["cluster"]]


def test_manifest_counts_the_update_and_every_file_is_rewritten(updated):
    out = updated["out"]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["n"] == 440
    since = manifest["since_fit"]
    assert since["fitted_n"] == 400 and since["placed"] == 70 and since["share"] == round(70 / 440, 6)
    last = since["updates"][-1]
    assert (last["new"], last["changed"], last["unchanged"], last["removed"]) == (60, 10, 370, 20)
    clusters = pq.read_table(out / "clusters.parquet").to_pylist()
    assert sum(r["size"] for r in clusters if r["level"] == "cluster") == 440
    page = (out / "map.html").read_text()
    assert "new059" in page and "n0000" not in page and "440 notes" in page
    assert json.loads((out / "metrics.json").read_text())["n"] == 440
    points = pq.read_table(out / "_points.parquet")
    assert points.column("note_id").to_pylist() == updated["ids"]
    emb_manifest = json.loads((updated["emb"] / "_manifest.json").read_text())
    assert emb_manifest["maps"] == [str(out.resolve())]  # recorded once, for `embednv forget`


def test_a_second_update_with_nothing_new_moves_nothing(updated):
    import dataclasses

    config = MapConfig(
        emb_dir=updated["emb"], out_dir=updated["out"], clusters=4, tsne=FAST, backend="cpu", update=True
    )
    run_map(dataclasses.replace(config))
    assert read_map(updated["out"]) == updated["after"]
    last = json.loads((updated["out"] / "_manifest.json").read_text())["since_fit"]["updates"][-1]
    assert (last["new"], last["changed"], last["removed"]) == (0, 0, 0)


def test_map_without_saved_basis_refuses_update_in_one_line(tmp_path, shards):
    x, _ = corpus(100, seed=4)
    emb, out = tmp_path / "emb", tmp_path / "map"
    shards(emb, pa.array([f"a{i}" for i in range(100)]), x)
    config = MapConfig(emb_dir=emb, out_dir=out, clusters=3, tsne=FAST, backend="cpu")
    run_map(config)
    (out / "_pca.npz").unlink()  # as a map made before the basis was kept
    before = (out / "map.parquet").read_bytes()
    import dataclasses

    with pytest.raises(MapError, match=r"made before maps kept their PCA basis .*refit") as error:
        run_map(dataclasses.replace(config, update=True))
    assert "\n" not in str(error.value)
    assert (out / "map.parquet").read_bytes() == before
    with pytest.raises(MapError, match="needs a finished map"):
        run_map(dataclasses.replace(config, out_dir=tmp_path / "none", update=True))
