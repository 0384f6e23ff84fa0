"""Shared fixtures: one real local Ray instance per test session, the bundled model, small corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MTSAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mtsamples.parquet"


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the pipeline tests (starting one costs seconds)."""
    import ray

    from embednv.embed.ray_job import init_ray, loopback_only

    if not ray.is_initialized():
        with loopback_only():  # as a private run: nothing on this machine's network interfaces
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")

    init_ray()  # applies embednv's DataContext settings to the running instance
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2: tokenizer and encoder as the pipeline loads them."""
    from embednv.models.registry import load_encoder, resolve_model

    ref = resolve_model("minilm", has_gpu=False)
    return ref, load_encoder(ref, "cpu", "float32")


@pytest.fixture(scope="session")
def mtsamples_path() -> Path:
    if not MTSAMPLES.is_file():
        pytest.skip(f"MTSamples not present at {MTSAMPLES} (shared data is optional)")
    return MTSAMPLES.resolve()
