"""bench/nvembed_model.py --quick end to end, and its section."""

import json

import pytest


@pytest.mark.timeout(600)
def test_nvembed_model_quick_run_and_its_section(tmp_path, bench_script):
    """bench/nvembed_model.py --quick (tiny sizes, the meta-device count on a few MTSamples-sized windows at real
    width) and the section run_all renders from its document, with the goals judged."""
    from bench.report_model import model_section

    bench_script("nvembed_model.py", "--quick", "--repeats", "1", "--json", str(tmp_path / "m.json"))
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
