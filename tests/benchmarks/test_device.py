"""bench/nvembed_device.py, the GPU acceptance script: its dry run on CPU in a venv shaped like the device's
image, and the section it renders into."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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

    from bench.report_separate import gpu_section
    from bench.run_all import separate_job

    (tmp_path / "benchmarks-gpu.json").write_text(json.dumps(doc))
    text = gpu_section(separate_job(tmp_path / "benchmarks-gpu.json", "cmd", "pending"))
    assert "| map | partial | not run: tsne" in text


def test_the_pending_gpu_section_says_why_and_how_to_run_it(tmp_path):
    """No device lent: the generated section keeps 'Pending' with the reason and the exact carried-wheel command."""
    from bench.report_separate import GPU_COMMAND, GPU_PENDING, gpu_section
    from bench.run_all import separate_job

    text = gpu_section(separate_job(tmp_path / "absent.json", GPU_COMMAND, GPU_PENDING))
    assert f"**Pending**: {GPU_PENDING}." in text and "not_drawn" in GPU_PENDING
    assert "make device-files" in text and '`[".gpu", ".device-wheels"]`' in text
    assert ".device-wheels/*-cp312-*.whl" in GPU_COMMAND and "--tokenizer .gpu/tokenizer" in GPU_COMMAND
