"""bench/run_all.py: every job at tiny sizes end to end, and how runs measured apart are merged and judged."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED = (
    "padding_efficiency",
    "ratio_vs_ceiling",
    "ratio_vs_sentence_transformers",
    "machine",
    "versions",
    "generated_at",
    "jobs",
)


@pytest.mark.timeout(600)
def test_run_all_quick_writes_both_reports(tmp_path, bench_script):
    docs_before = _mtime(REPO / "docs" / "benchmarks.json")
    bench_script("run_all.py", "--quick", "--out", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.json", "benchmarks.md"]
    doc = json.loads((tmp_path / "benchmarks.json").read_text())
    missing = [key for key in REQUIRED if key not in doc]
    assert not missing, f"benchmarks.json lacks {missing}"
    failed = {name: job.get("stderr_tail") for name, job in doc["jobs"].items() if job["status"] == "failed"}
    assert not failed, f"jobs failed: {failed}"
    assert doc["machine"]["logical_cores"] >= 1 and doc["versions"]["torch"]
    assert 0 < doc["ratio_vs_ceiling"] and 0 < doc["ratio_vs_sentence_transformers"]
    if (REPO / ".." / "shared" / "data" / "mtsamples.parquet").is_file():
        assert doc["padding_efficiency"] >= 0.97  # the batching's own floor: a lower figure is a bug
    else:
        assert doc["padding_efficiency"] is None
    text = (tmp_path / "benchmarks.md").read_text()
    for heading in ("## Summary", "## Padding efficiency", "## Throughput", "## Scale", "## Map stage", "## GPU"):
        assert heading in text
    assert "bench/nvembed_device.py --mtsamples" in text and "Quick run" in text
    assert _mtime(REPO / "docs" / "benchmarks.json") == docs_before, "--out must keep the run away from docs/"


def _mtime(path: Path):
    return path.stat().st_mtime_ns if path.is_file() else None


def test_separately_measured_scale_sizes_are_merged_labelled_and_replaced(tmp_path):
    from bench.run_all import SEPARATE_SCALE, add_separate_scale

    def run(notes, seconds):
        return {
            "notes": notes,
            "seconds": seconds,
            "memory": {"total_peak_rss_mib": 100.0, "driver_peak_rss_mib": 10.0, "workers_peak_rss_mib": 50.0},
        }

    jobs = {"scale": {"status": "ok", "result": {"runs": [run(10_000, 20.0), run(100_000, 110.0)]}}}
    separate = {
        "command": "python bench/scale.py --sizes 1000000",
        "generated_at": "then",
        "git_commit": "abc",
        "seconds": 700.0,
        "runs": [run(1_000_000, 1010.0), run(100_000, 999.0)],
    }
    (tmp_path / SEPARATE_SCALE).write_text(json.dumps(separate))

    origin = add_separate_scale(jobs, tmp_path)
    runs = jobs["scale"]["result"]["runs"]
    assert [(r["notes"], r["seconds"], r.get("separate", False)) for r in runs] == [
        (10_000, 20.0, False),
        (100_000, 110.0, False),
        (1_000_000, 1010.0, True),
    ]  # this run's 100k is kept
    assert origin["notes"] == [1_000_000] and origin["git_commit"] == "abc"
    assert jobs["scale"]["result"]["fit"]["ms_per_note"] == pytest.approx(1.0, rel=1e-6)

    separate["runs"] = [run(1_000_000, 2010.0)]  # a newer measurement replaces the merged one
    (tmp_path / SEPARATE_SCALE).write_text(json.dumps(separate))
    add_separate_scale(jobs, tmp_path)
    assert [r["seconds"] for r in jobs["scale"]["result"]["runs"]] == [20.0, 110.0, 2010.0]


def test_flatness_is_judged_on_the_heap_where_sampled_else_on_uss():
    from bench.report import _process_flatness
    from bench.scale import process_peak_growth

    def memory(rss, uss, anon=None):
        role = {"process_peak_rss_mib": rss, "process_peak_uss_mib": uss}
        if anon is not None:
            role["process_peak_anon_mib"] = anon
        return {"by_role": {"raylet": role}}

    # Code pages push USS up by 10.1% while the heap stays flat: judged on the heap, and 1.101 is not rounded to 1.10.
    growth = process_peak_growth(memory(28.6, 23.7, 8.3), memory(32.1, 26.1, 8.4))
    assert growth["raylet"]["uss"]["growth"] == 1.101
    text = _process_flatness({"sizes": [100_000, 1_000_000], "process_peak_growth": growth})
    assert "every heap (anonymous memory) peak" in text and "met (worst 1.012x)" in text
    older = process_peak_growth(memory(28.6, 23.7), memory(32.1, 26.1))  # a file from before the heap was sampled
    text = _process_flatness({"sizes": [100_000, 1_000_000], "process_peak_growth": older})
    assert "every USS peak" in text and "**MISSED** (worst 1.101x)" in text


def test_throughput_section_shows_the_cli_without_ray_when_it_was_measured():
    """(e), `embed --executor local`, gets its row and the seconds Ray adds; a run without it (--quick) renders as before."""
    from bench.report import _throughput

    job = json.loads((REPO / "docs" / "benchmarks.json").read_text())["jobs"]["throughput"]
    t = job["result"]
    without = {
        k: v
        for k, v in t.items()
        if k not in ("local_ratio_vs_ceiling", "local_ratio_vs_sentence_transformers", "ray_added_s")
    }
    for field in ("tokens_per_s", "median_seconds", "repetitions", "commands", "max_cosine_gap"):
        without[field] = {k: v for k, v in t[field].items() if k not in ("e", "e_vs_a")}
    assert "(e)" not in _throughput({**job, "result": without}) and "Without Ray" not in _throughput(
        {**job, "result": without}
    )

    c_s = without["median_seconds"]["c"]
    e_s = 20.0
    measured = {
        **without,
        "tokens_per_s": {**without["tokens_per_s"], "e": round(t["tokens"] / e_s, 1)},
        "median_seconds": {**without["median_seconds"], "e": e_s},
        "repetitions": {**without["repetitions"], "e": 2},
        "commands": {**without["commands"], "e": "python -m embednv.cli embed ... --executor local"},
        "local_ratio_vs_ceiling": 0.8,
        "local_ratio_vs_sentence_transformers": 0.9,
        "ray_added_s": round(c_s - e_s, 2),
    }
    text = _throughput({**job, "result": measured})
    row = [line for line in text.splitlines() if line.startswith("| (e) embednv embed, local executor |")]
    assert len(row) == 1 and "| 2 | 20.0 |" in row[0] and row[0].endswith("| 0.800 |"), row
    assert f"add {c_s - e_s:.1f} s to this {t['notes']}-note run ({c_s:.1f} s against 20.0 s)" in text
