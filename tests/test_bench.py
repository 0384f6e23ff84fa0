"""`bench/run_all.py --quick` end to end: every job runs at tiny sizes and both reports are written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ("padding_efficiency", "ratio_vs_ceiling", "ratio_vs_sentence_transformers", "machine", "versions", "generated_at", "jobs")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_all_quick_writes_both_reports(tmp_path):
    docs_before = _mtime(REPO / "docs" / "benchmarks.json")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
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
    assert "python bench/nvembed_device.py" in text and "Quick run" in text
    assert _mtime(REPO / "docs" / "benchmarks.json") == docs_before, "--out must keep the run away from docs/"


def _mtime(path: Path):
    return path.stat().st_mtime_ns if path.is_file() else None
