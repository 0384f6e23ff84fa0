import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.directories import MAP_FILES
from embednv.errors import MapError
from embednv.mapping.run import MapConfig, run_map


def test_writes_every_output(planted_map):
    out = planted_map["config"].out_dir
    assert sorted(p.name for p in out.iterdir()) == sorted(MAP_FILES)
    table = pq.read_table(out / "map.parquet")
    assert table.schema.names == ["note_id", "x", "y", "cluster", "group"]
    assert table.schema.field("note_id").type == pa.int32()  # original id type kept
    assert table.column("note_id").to_pylist() == planted_map["ids"].to_pylist()
    assert table.num_rows == 600
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("knn_preservation_10", "silhouette", "nmi", "ari"):
        assert isinstance(metrics[key], float), key
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["backend"] == "cpu" and manifest["n"] == 600 and manifest["seed"] == 3
    assert manifest["inputs"]["id_column"] == "note_id"
    assert manifest["tsne"]["learning_rate"] == 200 and manifest["tsne"]["perplexities"] == [30]
    assert set(manifest["timings_s"]) >= {"pca", "kmeans", "tsne", "terms", "metrics", "render"}
    assert manifest["clusters"]["k"] == 4


def test_planted_topics_come_out_on_top_of_their_clusters(planted_map):
    out = planted_map["config"].out_dir
    table = pq.read_table(out / "clusters.parquet").to_pylist()
    clusters = [row for row in table if row["level"] == "cluster"]
    assert len(clusters) == 4
    assert planted_map["result"].metrics["nmi"] > 0.95
    words = planted_map["topic_words"]
    for row in clusters:
        topic = row["top_labels"][0]["label"]
        assert row["top_labels"][0]["count"] == row["size"]  # pure cluster
        assert set(row["top_terms"][:5]) <= set(words[topic]), (topic, row["top_terms"])
        assert len(row["exemplar_ids"]) == 5
    md = (out / "clusters.md").read_text()
    assert "| cluster | size | group | top terms | exemplar ids | top labels |" in md
    groups = [row for row in table if row["level"] == "group"]
    assert len(groups) == 2 and {row["parent"] for row in clusters} == {0, 1}
    assert sum(row["size"] for row in groups) == 600 and groups[0]["size"] >= groups[1]["size"]
    for group in groups:  # a group holds exactly its clusters' notes and labels
        mine = [row for row in clusters if row["parent"] == group["cluster"]]
        assert group["size"] == sum(row["size"] for row in mine)
        assert {lab["label"] for lab in group["top_labels"]} == {row["top_labels"][0]["label"] for row in mine}
    points = pq.read_table(out / "map.parquet").to_pydict()
    parent = {row["cluster"]: row["parent"] for row in clusters}
    assert points["group"] == [parent[c] for c in points["cluster"]]


def test_html_shows_ids_not_note_text_by_default(planted_map):
    out = planted_map["config"].out_dir
    page = (out / "map.html").read_text()
    for name in pq.read_table(out / "clusters.parquet", filters=[("level", "=", "cluster")]).column("name").to_pylist():
        assert name in page  # cluster names (from terms) are drawn and in the legend
    first_note = pq.read_table(planted_map["notes"]).column("transcription")[0].as_py()
    assert first_note not in page and first_note[:40] not in page


def test_same_seed_same_map_and_overwrite_keeps_other_files(planted_map, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / "notes-of-mine.txt").write_text("keep")
    (out / "map.png").write_text("stale")
    config = dataclasses.replace(planted_map["config"], out_dir=out)
    with pytest.raises(MapError, match="--overwrite"):
        run_map(config)
    run_map(dataclasses.replace(config, overwrite=True))
    first = planted_map["config"].out_dir
    assert pq.read_table(out / "map.parquet").equals(pq.read_table(first / "map.parquet"))
    assert pq.read_table(out / "clusters.parquet").equals(pq.read_table(first / "clusters.parquet"))
    assert (out / "notes-of-mine.txt").read_text() == "keep"
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_labels_column_needs_a_file(planted, tmp_path):
    with pytest.raises(MapError, match="--labels-column needs"):
        run_map(MapConfig(emb_dir=planted["emb_dir"], out_dir=tmp_path / "m", labels_column="x"))


def test_missing_text_column_names_the_columns(planted, tmp_path):
    # Checked before any compute: the default text column "text" is not in the notes file.
    config = MapConfig(emb_dir=planted["emb_dir"], out_dir=tmp_path / "m", texts=planted["notes"])
    with pytest.raises(MapError, match=r"no column\(s\) \['text'\].*transcription"):
        run_map(config)
    assert not (tmp_path / "m").exists()


def test_bad_cluster_count_and_backend_fail_before_any_output(planted, tmp_path, monkeypatch):
    from embednv.errors import BackendUnavailable
    from embednv.mapping import backends

    with pytest.raises(MapError, match=r"--clusters must be in 2\.\.599"):  # 600 notes: at most 599
        run_map(MapConfig(emb_dir=planted["emb_dir"], out_dir=tmp_path / "m", clusters=601))
    monkeypatch.setattr(backends, "cuml_status", lambda: (False, "cuML is not installed"))
    with pytest.raises(BackendUnavailable):
        run_map(MapConfig(emb_dir=planted["emb_dir"], out_dir=tmp_path / "m", backend="cuml"))
    assert not (tmp_path / "m").exists()


def test_uris_read_like_paths(planted, planted_map, tmp_path):
    """file:// URIs (the same pyarrow filesystem code as s3:// and gs://) give the very same map."""
    import dataclasses

    import pyarrow.parquet as pq

    from embednv.mapping.run import run_map

    config = dataclasses.replace(
        planted_map["config"],
        emb_dir=f"file://{planted['emb_dir']}",
        texts=f"file://{planted['notes']}",
        out_dir=tmp_path / "map",
    )
    run_map(config)
    assert pq.read_table(tmp_path / "map" / "map.parquet").equals(
        pq.read_table(planted["root"] / "map" / "map.parquet")
    )
    assert (tmp_path / "map" / "clusters.md").read_text() == (planted["root"] / "map" / "clusters.md").read_text()
