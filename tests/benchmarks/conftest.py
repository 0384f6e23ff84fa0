"""`bench_script`: one of bench/'s scripts run as `make bench` runs it, in the checkout, failing with its stderr."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_script():
    def run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, f"bench/{script}", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run
