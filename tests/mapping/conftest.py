"""Tiny embedding directories and note files built in temp dirs, in the pipeline's shard format."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_files import write_shards

from embednv.mapping.tsne_params import TSNEParams

TOPIC_WORDS = {
    "cardiology": ["cardiac", "atrial", "fibrillation", "stent", "angiography", "ventricular"],
    "orthopedics": ["fracture", "femur", "arthroscopy", "ligament", "meniscus", "cast"],
    "neurology": ["seizure", "epilepsy", "migraine", "neuropathy", "tremor", "aphasia"],
    "gastroenterology": ["colonoscopy", "polyp", "gastritis", "endoscopy", "duodenum", "reflux"],
}
COMMON_WORDS = ["patient", "history", "presented", "treatment", "follow", "noted", "today", "exam", "plan", "reports"]
PER_TOPIC = 150

# Enough iterations for clear clusters, few enough to keep each map to a couple of seconds.
FAST_TSNE = TSNEParams(early_exaggeration_iter=100, n_iter=150)


def minilm_like(n: int, dim: int = 384, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in planted clusters around a large shared direction, like sentence embeddings."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    centres = rng.standard_normal((k, dim))
    labels = rng.integers(0, k, n)
    x = (
        3 * common / np.linalg.norm(common)
        + 0.8 * centres[labels] / np.sqrt(dim) * 6
        + 0.3 * rng.standard_normal((n, dim)) / np.sqrt(dim) * 6
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def topic_texts(topics: list[str], seed: int = 0) -> list[str]:
    """One note per entry: common clinical words, numbers, and 5 words of its topic."""
    rng = np.random.default_rng(seed)
    notes = []
    for topic in topics:
        words = list(rng.choice(COMMON_WORDS, 12)) + list(rng.choice(TOPIC_WORDS[topic], 5))
        words += [str(rng.integers(1, 500)), f"{rng.integers(1, 50)}mg"]  # must never become terms
        rng.shuffle(words)
        notes.append(" ".join(words))
    return notes


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """Inputs here are tiny: BLAS/OpenMP threads only add spin-wait, which on a loaded 2-core CI
    machine made a 600-point k-means take seconds instead of milliseconds. (openTSNE's own
    threads are not affected, so determinism is still tested with n_jobs = all cores.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> dict:
    """4 planted topics x 150 notes: shards (ids 1000..1599 int32), a notes Parquet with text and specialty."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(7)
    topics = [t for t in TOPIC_WORDS for _ in range(PER_TOPIC)]
    order = rng.permutation(len(topics))  # interleave topics across shards
    topics = [topics[i] for i in order]
    dim = 64
    centres = {t: rng.standard_normal(dim) * 2.0 for t in TOPIC_WORDS}
    x = np.stack([centres[t] + rng.standard_normal(dim) for t in topics])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = pa.array(np.arange(1000, 1000 + len(topics), dtype=np.int32))
    emb_dir = write_shards(root / "emb", ids, x.astype(np.float32), n_shards=3)
    notes = pa.table({"note_id": ids, "transcription": topic_texts(topics), "medical_specialty": topics})
    notes_path = root / "notes.parquet"
    pq.write_table(notes, notes_path)
    return {
        "root": root,
        "emb_dir": emb_dir,
        "notes": notes_path,
        "topics": topics,
        "ids": ids,
        "topic_words": TOPIC_WORDS,
    }


@pytest.fixture(scope="session")
def planted_map(planted) -> dict:
    """One full map of the planted corpus (texts and labels), shared by the read-only tests."""
    from embednv.mapping.run import MapConfig, run_map

    config = MapConfig(
        emb_dir=planted["emb_dir"],
        out_dir=planted["root"] / "map",
        clusters=4,
        tsne=FAST_TSNE,
        backend="cpu",
        seed=3,
        texts=planted["notes"],
        text_column="transcription",
        labels_column="medical_specialty",
    )
    return {"config": config, "result": run_map(config), **planted}


@pytest.fixture
def shards():
    """`write_shards` for tests (fixtures avoid importing conftest, whatever the test layout)."""
    return write_shards


@pytest.fixture
def minilm():
    """`minilm_like` for tests."""
    return minilm_like
