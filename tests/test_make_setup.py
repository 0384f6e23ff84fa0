"""`make setup` installs cuML (the `gpu` extra) only where it can work, and never fails because of it.

The real recipe runs with a stand-in `python` that records its arguments and plays pip: it
fails whenever the `gpu` extra is asked for, or never. No network, no venv: a second or two.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _setup(tmp_path: Path, pip_fails_for_gpu: bool, **variables: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    venv = tmp_path / "venv"
    venv.mkdir()
    python = venv / "python"
    python.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$(dirname "$0")/calls"\n'
        + (
            'case "$*" in *gpu*) echo "ERROR: No matching distribution found for cuml-cu13" >&2; exit 1;; esac\n'
            if pip_fails_for_gpu
            else ""
        )
        + "exit 0\n"
    )
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    settings = {"PY": str(python), "VENV": str(venv), "STAMP": str(venv / ".installed"), **variables}
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "setup", *(f"{k}={v}" for k, v in settings.items())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = (venv / "calls").read_text().splitlines() if (venv / "calls").exists() else []
    return done, calls


def _said(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("setup: ")]


def test_with_a_gpu_setup_installs_the_gpu_extra(tmp_path):
    done, calls = _setup(tmp_path, pip_fails_for_gpu=False, HAS_GPU="1", CUML_PLATFORM="Linux-x86_64")
    assert done.returncode == 0, done.stderr
    assert "-m pip install -q -e .[test,gpu]" in calls
    assert "-m pip install -q torch==2.13.0" not in calls  # the CPU wheel only without a GPU
    assert _said(done) == ["setup: cuML installed (the gpu extra): embednv map runs PCA, k-means and t-SNE on the GPU"]


def test_pip_failing_for_cuml_does_not_fail_setup_and_says_why_in_one_line(tmp_path):
    done, calls = _setup(tmp_path, pip_fails_for_gpu=True, HAS_GPU="1", CUML_PLATFORM="Linux-x86_64")
    assert done.returncode == 0, done.stderr
    assert "-m pip install -q -e .[test,gpu]" in calls  # tried, failed, carried on
    assert (tmp_path / "venv" / ".installed").exists()
    (line,) = _said(done)
    assert line.startswith(
        "setup: cuML not installed: pip failed (ERROR: No matching distribution found for cuml-cu13)"
    )


@pytest.mark.parametrize(
    ("variables", "why"),
    [
        ({"HAS_GPU": ""}, "no NVIDIA GPU (nvidia-smi)"),
        ({"HAS_GPU": "1", "CUML_PLATFORM": ""}, "no cuML wheels for"),
    ],
)
def test_without_a_gpu_or_wheels_it_is_not_tried(tmp_path, variables, why):
    done, calls = _setup(tmp_path, pip_fails_for_gpu=True, **variables)
    assert done.returncode == 0, done.stderr
    assert not any("gpu" in call for call in calls)
    (line,) = _said(done)
    assert line.startswith(f"setup: cuML not installed: {why}") and line.endswith("embednv map runs on CPU")
