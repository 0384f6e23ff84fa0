"""`bench/run_all.py --quick` end to end: every job runs at tiny sizes and both reports are written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
def test_run_all_quick_writes_both_reports(tmp_path):
    docs_before = _mtime(REPO / "docs" / "benchmarks.json")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
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
    sys.path.insert(0, str(REPO))
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


DEVICE_VENV = REPO / ".venv-device"
REQUIRE_DEVICE_ENV = "EMBEDNV_REQUIRE_DEVICE_ENV"  # set by `make test`, which builds the venv first


def device_python() -> Path:
    """.venv-device's python (`make device-env`: the device image's packages, openTSNE only as carried);
    skips without it, or fails under `make test`."""
    python = DEVICE_VENV / "bin" / "python"
    if python.is_file():
        return python
    why = f"{DEVICE_VENV} is missing: run `make device-env`"
    if os.environ.get(REQUIRE_DEVICE_ENV):
        pytest.fail(f"{why} ({REQUIRE_DEVICE_ENV} is set: make test builds it first)", pytrace=False)
    pytest.skip(why)


def _acceptance(tmp_path: Path, *args: str, python: Path | None = None, code: str | None = None) -> dict:
    """bench/nvembed_device.py --dry-run in the device-shaped venv (on MTSamples when this checkout has it)."""
    mtsamples = REPO / ".." / "shared" / "data" / "mtsamples.parquet"
    script = ["bench/nvembed_device.py", "--dry-run", "--json", str(tmp_path / "acceptance.json"), *args]
    script += ["--mtsamples", str(mtsamples)] if mtsamples.is_file() else []
    cmd = [str(python or device_python())] + (["-c", code, *script] if code else script)
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "PYTHONPATH": ""}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((tmp_path / "acceptance.json").read_text())


def test_the_device_env_is_shaped_like_the_device_image():
    """No Ray, cuML or mistral-common there, openTSNE only from the carried wheels; the image's versions."""
    python = device_python()
    code = (
        "import importlib.util as u, importlib.metadata as m, json\n"
        "print(json.dumps({'absent': [n for n in ('ray', 'cuml', 'mistral_common', 'embednv') if u.find_spec(n) is None],"
        " 'versions': {n: m.version(n) for n in ('transformers', 'tokenizers', 'huggingface_hub', 'openTSNE')}}))"
    )
    said = json.loads(
        subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
            env={**os.environ, "PYTHONPATH": ""},
        ).stdout
    )
    assert said["absent"] == ["ray", "cuml", "mistral_common", "embednv"]
    assert said["versions"] == {"transformers": "5.17.0", "tokenizers": "0.23.2", "huggingface_hub": "1.33.0",
                                "openTSNE": "1.0.4"}  # fmt: skip
    assert list((REPO / ".device-wheels").glob("opentsne-1.0.4-cp312-cp312-manylinux*.whl")), "the device's copy"


@pytest.mark.timeout(600)
def test_gpu_acceptance_dry_run(tmp_path):
    """bench/nvembed_device.py --dry-run: the GPU script's every section on CPU, in the device's package set,
    so that an import the device cannot satisfy (Ray, say) fails here first."""
    doc = _acceptance(tmp_path, "--figures", str(tmp_path / "figures"))
    sections = doc["sections"]
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(
        ["checkpoint", "mtsamples", "load", "attention", "oom", "cosine", "map"], "ok"
    ), {n: s.get("why") for n, s in sections.items()}
    assert doc["ray_imported"] is False
    files = set(sections["checkpoint"]["files"])
    assert {f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)} | {
        "model.safetensors.index.json",
        "config.json",
    } <= files
    corpus = sections["mtsamples"]  # run_embed with the local executor: its summary's figures
    assert corpus["embedded"] + corpus["errored"] == corpus["rows_in_file"] == corpus["rows_in_corpus"] > 0
    assert corpus["rows_read_back"] == corpus["embedded"] and corpus["max_norm_error"] < 1e-3
    assert set(corpus["stage_seconds"]) == {"load", "read", "tokenize", "embed", "write"}
    assert corpus["seconds_to_load"] > 0 and corpus["useful_flops"] > 0
    assert 0 < corpus["padding_efficiency"] <= 1 and corpus["tokens_per_s"] > 0
    packed = sections["attention"]  # the packed forward beside the padded one it replaced, same weights
    assert packed["padded_model"] == "git 69809c2~1" and packed["padded_tokens"] > packed["real_tokens"]
    for path in ("packed", "packed_sdpa"):
        assert packed[path]["cosine_to_padded_min"] > 0.999 and packed[path]["median_s"] > 0
    assert sections["cosine"]["min_cosine"] > 0.9  # bf16 vs fp32 of a tiny random model; the GPU run checks >= 0.999
    assert sections["oom"]["oom_splits"] > 0 and sections["oom"]["embedded"] and sections["oom"]["goal_met"]
    assert sections["map"]["backend"] == "cpu" and sections["map"]["points"] == 300
    assert set(sections["map"]["timings_s"]) >= {"pca", "kmeans", "tsne"}
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["map.html", "map.png"]

    sys.path.insert(0, str(REPO))
    from bench.report_separate import gpu_section
    from bench.run_all import separate_job

    (tmp_path / "benchmarks-gpu.json").write_text(json.dumps(doc))
    text = gpu_section(separate_job(tmp_path / "benchmarks-gpu.json", "cmd", "pending"))
    assert "dry run" in text and "| mtsamples | ok |" in text and "Pending" not in text


@pytest.mark.timeout(600)
def test_a_map_without_tsne_is_partial_never_ok(tmp_path):
    """Without openTSNE (not carried), the map section says which phase did not run and why."""
    hide = "import runpy, sys; sys.modules['openTSNE'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    doc = _acceptance(tmp_path, "--only", "map", code=hide)
    section = doc["sections"]["map"]
    assert section["status"] == "partial" and section["timings_s"]["tsne"].startswith("not run: ")
    assert "not run: tsne" in section["why"] and "openTSNE" in section["why"]
    assert isinstance(section["timings_s"]["pca"], float) and isinstance(section["timings_s"]["kmeans"], float)

    sys.path.insert(0, str(REPO))
    from bench.report_separate import gpu_section
    from bench.run_all import separate_job

    (tmp_path / "benchmarks-gpu.json").write_text(json.dumps(doc))
    text = gpu_section(separate_job(tmp_path / "benchmarks-gpu.json", "cmd", "pending"))
    assert "| map | partial | not run: tsne" in text


@pytest.mark.timeout(600)
def test_fanout_small_run_and_both_operating_sections_render(tmp_path):
    """bench/fanout.py end to end on 3,000 notes (4096-d vectors through the real CLI), and the
    sections the report renders from fanout's and crash's documents."""
    from bench.report_separate import crash_section, fanout_section

    out = subprocess.run(
        [sys.executable, "bench/fanout.py", "--notes", "3000", "--json", str(tmp_path / "fanout.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads((tmp_path / "fanout.json").read_text())
    assert "embedded 3,000 of 3,000 notes" in doc["result"]["summary"] and doc["result"]["dim"] == 4096
    assert doc["result"]["rows_per_s_total"] > 0
    assert "| goal ≥ 5,000 rows/s |" in fanout_section(doc)

    runs = [
        {
            "sharding": "--rows-per-shard 200",
            "kill_at": 0.5,
            "killed": True,
            "seconds_to_kill": 9.0,
            "rows_embedded_at_kill": 1400,
            "shards_on_disk_at_kill": 6,
            "rows_recomputed": 1800,
            "rows_lost": 200,
            "resume_complete": True,
        }
    ]
    text = crash_section(
        {
            "command": "python bench/crash.py",
            "notes": 3000,
            "window_rows": 1024,
            "actors": 1,
            "runs": runs,
            "git_commit": "abc",
            "generated_at": "today",
            "seconds": 600,
        }
    )
    assert "| --rows-per-shard 200 | 50% | 1,400 | 6 | 1,800 | 200 | yes |" in text
    assert "every id exactly once" in text


def test_flatness_is_judged_on_the_heap_where_sampled_else_on_uss():
    sys.path.insert(0, str(REPO))
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


def test_index_bench_small_run_and_its_section(tmp_path):
    """bench/cohort_index.py end to end at 8,000 x 64-d (the real `embednv index` and `cohort` commands), and
    the benchmarks.md section run_all renders from its document, with the goal judged."""
    sys.path.insert(0, str(REPO))
    from bench.report_index import index_section

    out = subprocess.run(
        [sys.executable, "bench/cohort_index.py", "--n", "8000", "--dim", "64", "--queries", "20", "--kinds", "ivf"]
        + ["--json", str(tmp_path / "index.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads((tmp_path / "index.json").read_text())
    (run,) = doc["runs"]
    assert run["kind"] == "ivf" and run["nlist"] == 64 and run["queries"] == 20 and len(run["cli_near_s"]) == 3
    assert run["recall_at_50"] >= 0.9 and run["calibration_recall"] >= 0.97 and 0 < run["size_vs_vectors"] < 1.2
    text = index_section({"status": "ok", "result": doc})
    assert "| ivf (`IVF64,Flat`) |" in text and "Goal: recall@50 ≥ 0.95" in text
    doc["runs"][0]["median_ms"] = 80.0
    assert "ivf **MISSED**" in index_section({"status": "ok", "result": doc})
    assert "run `make bench-index`" in index_section({"status": "pending", "error": "not measured yet"})


def test_the_pending_gpu_section_says_why_and_how_to_run_it(tmp_path):
    """No device lent: the generated section keeps 'Pending' with the reason and the exact carried-wheel command."""
    sys.path.insert(0, str(REPO))
    from bench.report_separate import GPU_COMMAND, GPU_PENDING, gpu_section
    from bench.run_all import separate_job

    text = gpu_section(separate_job(tmp_path / "absent.json", GPU_COMMAND, GPU_PENDING))
    assert f"**Pending**: {GPU_PENDING}." in text and "not_drawn" in GPU_PENDING
    assert "make device-files" in text and '`[".gpu", ".device-wheels"]`' in text
    assert ".device-wheels/*-cp312-*.whl" in GPU_COMMAND and "--tokenizer .gpu/tokenizer" in GPU_COMMAND


@pytest.mark.timeout(600)
def test_nvembed_model_quick_run_and_its_section(tmp_path):
    """bench/nvembed_model.py --quick (tiny sizes, the meta-device count on a few MTSamples-sized windows at real
    width) and the section run_all renders from its document, with the goals judged."""
    sys.path.insert(0, str(REPO))
    from bench.report_model import model_section

    out = subprocess.run(
        [sys.executable, "bench/nvembed_model.py", "--quick", "--repeats", "1", "--json", str(tmp_path / "m.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads((tmp_path / "m.json").read_text())
    batch = doc["micro_batch"]
    assert batch["real_tokens"] < batch["padded_tokens"] and batch["pooled_tokens"] < batch["real_tokens"]
    assert batch["useful_over_executed_after"] >= 0.9999 > batch["useful_over_executed_before"]
    assert batch["peak_gib_after"] < batch["peak_gib_before"]
    assert doc["tiny"]["cosine_vs_reference_min"] >= 0.9999 and doc["tiny"]["cosine_bf16_vs_fp32_min"] >= 0.999
    text = model_section({"status": "ok", "file": "docs/m.json", "result": doc})
    assert "| Useful / executed FLOPs, this micro-batch |" in text and "goal ≥ 0.99: met" in text
    doc["micro_batch"]["memory_ratio"] = 1.5
    assert "goal ≥ 2.0x: **missed**" in model_section({"status": "ok", "file": "docs/m.json", "result": doc})
    assert "Run `python bench/nvembed_model.py" in model_section(
        {"status": "pending", "command": "python bench/nvembed_model.py --json x", "error": "not measured yet"}
    )


def test_map_1m_bench_small_run_and_its_section(tmp_path):
    """bench/bench_map_1m.py end to end at 1,500 notes (the real `embednv map --texts`), phases read from the
    map's manifest, the notes phase at two sizes, and the section run_all renders from its document."""
    sys.path.insert(0, str(REPO))
    from bench.report_map_1m import map_1m_section

    out = subprocess.run(
        [sys.executable, "bench/bench_map_1m.py", "--n", "1500", "--dim", "32", "--notes-sizes", "500,1500"]
        + ["--workdir", str(tmp_path / "w"), "--json", str(tmp_path / "map1m.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
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


def test_the_update_section_judges_the_count_and_the_share():
    from bench.report_update import update_section

    record = {"bytes_rewritten": 3_000_000, "shards_rewritten": 2, "bytes_written": 40_000, "new_shards": 1}
    doc = {
        "command": "python bench/update.py --n 1000",
        "git_commit": "abc1234",
        "generated_at": "2026-12-03T11:00:00+00:00",
        "machine": {"load_average_1m_at_start": 2.0, "load_average_1m_at_end": 2.5, "logical_cores": 2},
        "n": 1000,
        "new": 10,
        "changed": 1,
        "expected_to_embed": 11,
        "embedded": 11,
        "record": record,
        "full_seconds": 100.0,
        "update_seconds": 6.0,
        "planning_seconds": 0.5,
        "model_load_seconds": 3.0,
        "startup_seconds": 3.5,
        "share_of_full": 0.06,
        "share_beyond_startup": 0.025,
        "goal_share": 0.03,
        "directory_bytes": 3_100_000,
    }
    text = update_section({"status": "ok", "result": doc})
    assert "11 of 11 expected: exact" in text and "≤ 3%): met" in text and "3.0 MB rewritten in 2 shards" in text
    wrong = update_section({"status": "ok", "result": doc | {"embedded": 12, "share_beyond_startup": 0.05}})
    assert "**WRONG**" in wrong and "**MISSED**" in wrong
    assert "run `make bench-update`" in update_section({"status": "pending", "error": "not measured yet"})
    probe = doc | {"model": "probe", "n": 100_000, "command": "python bench/update.py --n 100000 --model probe"}
    probe |= {"embedded": 1100, "expected_to_embed": 1100}
    both = update_section({"status": "ok", "result": doc}, {"status": "ok", "result": probe})
    assert both.startswith(text) and "### At 100k notes, the pipeline alone (probe encoder)" in both
    assert "a 100,000-note sample corpus embedded once with the probe encoder" in both
    assert "The issue asks for 100k" in text and both.count("The issue asks for 100k") == 1  # MiniLM's run only
    # The probe's full run has no model time: its share is not the goal's; MiniLM's rate (10 notes/s) gives the estimate.
    assert both.count("Goal (share beyond") == 1 and "Goal: not judged on this run" in both
    assert "a full run of 100,000 notes about 2.8 h, this update about 112 s, 1.11% of it" in both  # 2.5 s + 1,100 / 10


def test_map_update_bench_small_run_and_its_section(tmp_path):
    """bench/map_update.py's sample-then-place pair at 1,000 notes (real `embednv map` runs, short t-SNE), and its section."""
    sys.path.insert(0, str(REPO))
    from bench.report_map_update import map_update_section

    out = subprocess.run(
        [sys.executable, "bench/map_update.py", "--large", "1000", "--large-sample", "300", "--no-mtsamples", "--quick"]
        + ["--corpus", "240", "--corpus-sample", "100"]
        + ["--json", str(tmp_path / "update.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
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
