"""The model stage without Ray: real MiniLM, real tokenizer, tables as the pipeline builds them."""

import numpy as np
import pyarrow as pa
import pytest
from minilm_reference import direct_minilm

from embednv.columns import EMBEDDING, ERROR, INSTRUCTION, N_CHUNKS, ROW, SHARD, TEXT
from embednv.embed.tokenize import tokenize_table
from embednv.embed.worker import EmbedWorker, embed_notes, embed_splitting

TEXTS = [
    "Chest pain radiating to the left arm.",
    "Follow up for type 2 diabetes, A1c 7.9.",
    "Knee effusion after a fall.",
]


def note_table(texts, errors=None):
    n = len(texts)
    return pa.table(
        {
            "note_id": pa.array(range(n), pa.int64()),
            TEXT: pa.array(texts, pa.large_string()),
            ERROR: pa.array(errors or [None] * n, pa.string()),
            SHARD: pa.array([0] * n, pa.int32()),
            ROW: pa.array(range(n), pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def worker(minilm):
    ref, _ = minilm
    return ref, EmbedWorker(ref, "cpu", "float32", batch_tokens=2048)


def test_embeddings_equal_a_direct_model_call(worker):
    ref, embed = worker
    out = embed(tokenize_table(note_table(TEXTS), ref, ""))
    got = np.stack(out.column(EMBEDDING).to_numpy(zero_copy_only=False))
    for vector, expected in zip(got, direct_minilm(TEXTS)):
        assert vector.shape == (384,)
        assert np.dot(vector, expected) >= 0.9999
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    assert out.column("note_id").to_pylist() == [0, 1, 2]
    assert TEXT not in out.column_names  # note text never leaves the tokenizer stage


def test_error_rows_pass_through_without_embedding(worker):
    ref, embed = worker
    out = embed(tokenize_table(note_table(["ok text", None], [None, "text is null"]), ref, ""))
    assert out.column(ERROR).to_pylist() == [None, "text is null"]
    assert out.column(EMBEDDING).is_null().to_pylist() == [False, True]


def test_long_note_is_chunked_and_combined(minilm):
    ref, _ = minilm
    from dataclasses import replace

    short_window = replace(ref, max_tokens=32)
    long_text = " ".join(TEXTS * 6)
    out = EmbedWorker(short_window, "cpu", "float32", batch_tokens=256)(
        tokenize_table(note_table([long_text, TEXTS[0]]), short_window, "")
    )
    assert out.column(N_CHUNKS).to_pylist()[0] > 1
    assert out.column(N_CHUNKS).to_pylist()[1] == 1
    assert out.column("n_tokens").to_pylist()[0] > 32
    vector = np.asarray(out.column(EMBEDDING)[0].as_py())
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


class FakeOOM(RuntimeError):
    pass


def test_out_of_memory_splits_down_to_one_window_then_records_the_note():
    calls = []

    def embed(batch):
        calls.append(len(batch))
        if len(batch) > 2 or any(len(s) > 100 for s in batch):
            raise FakeOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.ones((len(batch), 4), np.float32)

    sequences = [[1] * 10, [1] * 10, [1] * 500, [1] * 10, [1] * 10]
    out, failed = np.zeros((5, 4), np.float32), {}
    splits = embed_splitting(embed, sequences, [0, 1, 2, 3, 4], out, failed)
    assert splits == 2  # 5 -> 2 + 3, then 3 -> 1 (the long window, recorded) + 2
    assert list(failed) == [2] and "does not fit in accelerator memory (500 tokens" in failed[2]
    assert out[[0, 1, 3, 4]].sum() == 16 and out[2].sum() == 0
    assert calls[0] == 5 and 1 in calls


def test_embed_notes_pools_windows_and_reports_each_note():
    """The loop shared by the actor and Embedder: per-note vectors, failures and token counts."""

    def embed(batch):
        if any(len(s) > 100 for s in batch):
            raise FakeOOM("CUDA out of memory")
        return np.stack([np.eye(2, dtype=np.float32)[len(s) % 2] for s in batch])

    notes = [[[1] * 4], [], [[1] * 3, [1] * 4], [[1] * 500]]  # one window, none, two, one too large
    result = embed_notes(embed, 2, notes, batch_tokens=8)
    assert result.failures == {
        1: "no token windows",
        3: "does not fit in accelerator memory (500 tokens in one window)",
    }
    np.testing.assert_allclose(result.vectors[0], [1, 0])
    np.testing.assert_allclose(result.vectors[2], np.array([4, 3]) / 5, atol=1e-6)  # token-weighted mean, re-normalised
    assert result.window_tokens.tolist() == [4, 0, 7, 500] and result.oom_splits == 0
    assert (result.padded_tokens >= result.window_tokens).all()


def test_other_errors_are_not_swallowed():
    def embed(batch):
        raise ValueError("shape bug")

    with pytest.raises(ValueError, match="shape bug"):
        embed_splitting(embed, [[1]], [0], np.zeros((1, 1)), {})


def test_cpu_worker_uses_its_cores_unless_told_otherwise(minilm):
    # Ray starts a num_cpus=1 actor with OMP_NUM_THREADS=1; the worker must override it.
    import torch

    from embednv.runtime import usable_cpus

    before = torch.get_num_threads()
    try:
        ref, _ = minilm
        EmbedWorker(ref, "cpu", "float32", 4096, threads=1)
        assert torch.get_num_threads() == 1
        EmbedWorker(ref, "cpu", "float32", 4096)
        assert torch.get_num_threads() == usable_cpus()
    finally:
        torch.set_num_threads(before)


def test_worker_takes_the_instruction_with_each_window(tmp_path):
    """One loaded NV-Embed serves a window of queries, then one of documents, as two Embedders would."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from nvembed_fixtures import write_tiny_nvembed_checkpoint

    from embednv import Embedder
    from embednv.models.nvembed import build_instruction
    from embednv.models.registry import resolve_model

    checkpoint = str(write_tiny_nvembed_checkpoint(tmp_path / "ckpt", seed=2, shards=1))
    ref = resolve_model(checkpoint, has_gpu=False)
    worker = EmbedWorker(ref, "cpu", "float32", batch_tokens=512)
    query = build_instruction("similar-notes")
    for instruction in (query, ""):
        out = worker(tokenize_table(note_table(TEXTS), ref, instruction))
        assert INSTRUCTION not in out.column_names
        got = np.stack(out.column(EMBEDDING).to_numpy(zero_copy_only=False))
        want = Embedder(model=checkpoint, device="cpu", dtype="float32", instruction=instruction).encode(TEXTS)
        np.testing.assert_allclose(got, want, atol=1e-6)
    mixed = pa.concat_tables(
        [tokenize_table(note_table(TEXTS[:1]), ref, query), tokenize_table(note_table(TEXTS[1:]), ref, "")]
    )
    with pytest.raises(ValueError, match="A window holds rows of 2 instructions"):
        worker(mixed)
