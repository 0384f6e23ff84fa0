"""bench/cohort_index.py end to end at a small size, and its section."""

import json


def test_index_bench_small_run_and_its_section(tmp_path, bench_script):
    """bench/cohort_index.py end to end at 8,000 x 64-d (the real `embednv index` and `cohort` commands), and
    the benchmarks.md section run_all renders from its document, with the goal judged."""
    from bench.report_index import index_section

    args = ["--n", "8000", "--dim", "64", "--queries", "20", "--kinds", "ivf", "--json", str(tmp_path / "index.json")]
    bench_script("cohort_index.py", *args)
    doc = json.loads((tmp_path / "index.json").read_text())
    (run,) = doc["runs"]
    assert run["kind"] == "ivf" and run["nlist"] == 64 and run["queries"] == 20 and len(run["cli_near_s"]) == 3
    assert run["recall_at_50"] >= 0.9 and run["calibration_recall"] >= 0.97 and 0 < run["size_vs_vectors"] < 1.2
    text = index_section({"status": "ok", "result": doc})
    assert "| ivf (`IVF64,Flat`) |" in text and "Goal: recall@50 ≥ 0.95" in text
    doc["runs"][0]["median_ms"] = 80.0
    assert "ivf **MISSED**" in index_section({"status": "ok", "result": doc})
    assert "run `make bench-index`" in index_section({"status": "pending", "error": "not measured yet"})
