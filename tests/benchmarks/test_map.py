"""The map benchmarks end to end at small sizes (bench/bench_map_1m.py, bench/map_update.py), and their sections."""

import json


def test_map_1m_bench_small_run_and_its_section(tmp_path, bench_script):
    """bench/bench_map_1m.py end to end at 1,500 notes (the real `embednv map --texts`), phases read from the
    map's manifest, the notes phase at two sizes, and the section run_all renders from its document."""
    from bench.report_map_1m import map_1m_section

    args = ["--n", "1500", "--dim", "32", "--notes-sizes", "500,1500", "--repeats", "1"]
    bench_script(
        "bench_map_1m.py", *args, "--workdir", str(tmp_path / "w"), "--json", str(tmp_path / "map1m.json"), timeout=900
    )
    doc = json.loads((tmp_path / "map1m.json").read_text())
    assert [r["n"] for r in doc["notes"]] == [500, 1500] and all(r["peak_rss_mb"] > 50 for r in doc["notes"])
    run = doc["map"]
    manifest = json.loads((tmp_path / "w" / "map-1500" / "_manifest.json").read_text())
    assert set(run["phases"]) == set(manifest["timings_s"]) >= {"pca", "kmeans", "tsne", "annotations", "terms"}
    assert all(p["peak_rss_mb"] > 50 for p in run["phases"].values())
    assert run["process_peak_rss_mb"] == max(p["peak_rss_mb"] for p in run["phases"].values())
    text = map_1m_section({"status": "ok", "result": doc})
    assert "| annotations |" in text and "500 to 1,500 notes" in text
    assert "goal 30: not judged at 1,500 notes (the goal is for 1,000,000)" in text
    doc["map"]["n"] = 1_000_000
    assert "goal 30: met" in map_1m_section({"status": "ok", "result": doc})
    doc["map"]["seconds"] = 3600.0
    assert "goal 30: **MISSED**" in map_1m_section({"status": "ok", "result": doc})
    assert "run `make bench-map-1m`" in map_1m_section({"status": "pending", "error": "not measured yet"})


def test_map_update_bench_small_run_and_its_section(tmp_path, bench_script):
    """bench/map_update.py's sample-then-place pair at 1,000 notes (real `embednv map` runs, short t-SNE), and its section."""
    from bench.report_map_update import map_update_section

    args = [
        "--large",
        "1000",
        "--large-sample",
        "300",
        "--no-mtsamples",
        "--quick",
        "--corpus",
        "240",
        "--corpus-sample",
        "100",
    ]
    bench_script("map_update.py", *args, "--json", str(tmp_path / "update.json"))
    doc = json.loads((tmp_path / "update.json").read_text())
    pair = doc["sampled_large"]
    assert pair["n"] == 1000 and pair["sampled_manifest"]["fitted"] + pair["sampled_manifest"]["placed"] == 1000
    assert pair["full"]["map_nmi"] > 0.9 and pair["sampled"]["map_nmi"] > 0.9  # 30 planted clusters, both maps
    text = map_update_section({"status": "ok", "result": doc})
    assert "**Map update not measured**" in text and "1,000 synthetic 384-d notes" in text
    corpus = doc["sampled_corpus"]  # MiniLM vectors of 14 specialties' notes: both maps separate them
    assert corpus["n"] == 240 and corpus["full"]["map_nmi"] > 0.5 and corpus["sampled"]["map_nmi"] > 0.5
    assert "240 sample-corpus notes (MiniLM over each note's first 64 tokens), against their specialty" in text
    assert "| kNN preservation@10, placed notes |" in text
    assert pair["seeds"] == [0] and "t-SNE seeds" not in text  # one seed: no per-seed line
    halved = {**pair["sampled"], "map_nmi": pair["full"]["map_nmi"] / 2}
    two = {
        **pair,
        "per_seed": [{"full": pair["full"], "sampled": pair["sampled"]}, {"full": pair["full"], "sampled": halved}],
    }
    text = map_update_section({"status": "ok", "result": {**doc, "sampled_large": two}})
    nmi_ratio = pair["sampled"]["map_nmi"] / pair["full"]["map_nmi"]
    assert "mean over 2 t-SNE seeds a side (each map's NMI itself the mean of 5 k-means runs)" in text
    assert f"map NMI {nmi_ratio:.2f}, 0.50." in text
    assert "run `make bench-map-update`" in map_update_section({"status": "pending", "error": "not measured yet"})
