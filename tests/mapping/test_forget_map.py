"""`forget_from_map`: forgotten notes leave every file of the map; the others stay where they were."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.errors import MapError
from embednv.mapping.forget import forget_from_map
from embednv.mapping.run import MapConfig, run_map
from embednv.mapping.tsne_params import TSNEParams

FAST = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)


@pytest.fixture
def mapped(tmp_path, shards, minilm):
    x, topics = minilm(300, dim=32, k=4, seed=5)
    ids = [f"zq-note-{i:04d}" for i in range(300)]  # no id is a substring of another, nor of anything else
    emb, out = tmp_path / "emb", tmp_path / "map"
    shards(emb, pa.array(ids), x)
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"note_id": ids, "topic": [f"topic-{t}" for t in topics]}), labels)
    config = MapConfig(
        emb_dir=emb, out_dir=out, clusters=4, tsne=FAST, backend="cpu", labels=labels, labels_column="topic"
    )
    run_map(config)
    exemplars = pq.read_table(out / "clusters.parquet").column("exemplar_ids").to_pylist()
    # Every exemplar of the first cluster and of the first group, and a few others.
    gone = set(exemplars[0]) | set(exemplars[-1]) | {ids[7], ids[150], ids[299]}
    return {"out": out, "ids": ids, "gone": gone}


def grep_all(folder, ids) -> dict:
    """Which of `ids` occur, as bytes, in which file of `folder`."""
    found = {}
    for path in folder.iterdir():
        data = path.read_bytes()
        hits = [i for i in ids if i.encode() in data]
        if hits:
            found[path.name] = hits
    return found


def test_forgotten_notes_leave_every_file(mapped):
    out, gone = mapped["out"], mapped["gone"]
    before = pq.read_table(out / "map.parquet").to_pydict()
    assert grep_all(out, gone)  # the check can see them before
    assert forget_from_map(str(out), gone | {"not-on-this-map"}) == len(gone)
    assert grep_all(out, gone) == {}
    after = pq.read_table(out / "map.parquet").to_pydict()
    kept = [i for i, v in enumerate(before["note_id"]) if v not in gone]
    for column in ("note_id", "x", "y", "cluster", "group"):
        assert after[column] == [before[column][i] for i in kept]  # nobody moved
    clusters = pq.read_table(out / "clusters.parquet").to_pylist()
    assert sum(r["size"] for r in clusters if r["level"] == "cluster") == 300 - len(gone)
    assert all(len(r["exemplar_ids"]) == 5 for r in clusters)  # refilled from the saved 50-d coordinates
    assert sum(sum(lab["count"] for lab in r["top_labels"]) for r in clusters if r["level"] == "cluster") == 300 - len(
        gone
    )
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["n"] == 300 - len(gone) and manifest["forgotten"][-1]["count"] == len(gone)
    assert json.loads((out / "metrics.json").read_text())["n"] == 300 - len(gone)
    assert pq.read_table(out / "_points.parquet").num_rows == 300 - len(gone)
    assert forget_from_map(str(out), gone) == 0  # again: nothing left to remove


def test_forget_on_a_map_without_saved_state(mapped):
    out, gone = mapped["out"], mapped["gone"]
    (out / "_points.parquet").unlink()
    (out / "_pca.npz").unlink()
    assert forget_from_map(str(out), gone) == len(gone)
    assert grep_all(out, gone) == {}
    assert pq.read_table(out / "map.parquet").num_rows == 300 - len(gone)


def test_forget_refuses_what_is_not_a_map(tmp_path):
    with pytest.raises(MapError, match="holds no finished map"):
        forget_from_map(str(tmp_path), {"a"})
