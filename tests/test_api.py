"""`embednv.Embedder`: the Python API equals a direct model call and the pipeline's own actor."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from minilm_reference import direct_minilm
from nvembed_fixtures import write_tiny_nvembed_checkpoint
from test_nvembed import official_inputs, reference_embed

from embednv import Embedder
from embednv.columns import EMBEDDING, ERROR, N_CHUNKS, TEXT
from embednv.embed.tokenize import tokenize_table
from embednv.embed.worker import EmbedWorker

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "Chest pain radiating to the left arm.",
    "Follow up for type 2 diabetes, A1c 7.9.",
    "Knee effusion after a fall.",
]
LONG = " ".join(TEXTS * 6)  # over 32 tokens: several windows at max_tokens=32


@pytest.fixture(scope="module")
def minilm_embedder():
    return Embedder(model="minilm", device="cpu")


def worker_vectors(ref, texts, batch_tokens):
    """What the Ray actor writes for `texts`: tokenize_table + EmbedWorker on a hand-built window."""
    table = pa.table({"note_id": pa.array(range(len(texts)), pa.int64()), TEXT: pa.array(texts, pa.large_string()),
                      ERROR: pa.nulls(len(texts), pa.string())})  # fmt: skip
    out = EmbedWorker(ref, "cpu", "float32", batch_tokens=batch_tokens)(tokenize_table(table, ref, ""))
    return np.stack(out.column(EMBEDDING).to_numpy(zero_copy_only=False)), out.column(N_CHUNKS).to_pylist()


def test_encode_equals_a_direct_model_call_and_the_actor(minilm_embedder):
    got = minilm_embedder.encode(TEXTS)
    assert got.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for vector, expected in zip(got, direct_minilm(TEXTS)):
        assert np.dot(vector, expected) >= 0.9999
    actor, _ = worker_vectors(minilm_embedder.ref, TEXTS, minilm_embedder.batch_tokens)
    assert (np.sum(got * actor, axis=1) >= 0.9999).all()


def test_order_is_kept_with_mixed_lengths_and_a_chunked_note():
    embedder = Embedder(model="minilm", device="cpu", max_tokens=32, batch_tokens=96)
    texts = [TEXTS[0], LONG, TEXTS[2], "Pain.", TEXTS[1] * 2]  # lengths deliberately out of order
    got = embedder.encode(texts)
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(got, alone, atol=1e-5)  # each row belongs to its own text
    actor, chunks = worker_vectors(embedder.ref, texts, 96)
    assert chunks[1] > 1 and chunks[0] == 1  # the long note was split into windows and pooled
    assert (np.sum(got * actor, axis=1) >= 0.9999).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_text_that_cannot_be_embedded(minilm_embedder):
    with pytest.raises(ValueError, match=r"text 1 cannot be embedded: text is empty or whitespace only"):
        minilm_embedder.encode([TEXTS[0], "  \n", None])
    got = minilm_embedder.encode([TEXTS[0], "  \n", None, TEXTS[1]], errors="nan")
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all() and np.isfinite(got[[0, 3]]).all()
    np.testing.assert_allclose(got[[0, 3]], minilm_embedder.encode([TEXTS[0], TEXTS[1]]), atol=1e-6)
    assert minilm_embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of texts"):
        minilm_embedder.encode("one string")
    with pytest.raises(ValueError, match="Invalid errors: 'skip'. Valid: raise, nan"):
        minilm_embedder.encode(TEXTS, errors="skip")


def test_a_window_that_does_not_fit_names_the_text(minilm_embedder, monkeypatch):
    embedder = replace_encoder(minilm_embedder, monkeypatch, fits=lambda batch: max(map(len, batch)) < 8)
    with pytest.raises(ValueError, match=r"text 0 cannot be embedded: does not fit in accelerator memory \(1\d tokens"):
        embedder.encode([TEXTS[0], "Pain."])
    got = embedder.encode([TEXTS[0], "Pain."], errors="nan")
    assert np.isnan(got[0]).all() and np.isfinite(got[1]).all()


def replace_encoder(embedder, monkeypatch, fits):
    """The embedder with an encoder that raises CUDA's out-of-memory error on batches `fits` rejects."""
    real = embedder.encoder.embed

    def embed(batch, instruction=""):
        if not fits(batch):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch, instruction)

    monkeypatch.setattr(embedder.encoder, "embed", embed)
    return embedder


def test_invalid_arguments_name_the_valid_ones():
    with pytest.raises(ValueError, match="Invalid device 'tpu'. Valid: auto, cpu, cuda"):
        Embedder(model="minilm", device="tpu")
    with pytest.raises(ValueError, match="Invalid dtype 'int8'"):
        Embedder(model="minilm", dtype="int8")
    with pytest.raises(ValueError, match="task or instruction, not both"):
        Embedder(model="minilm", task="specialty", instruction="Instruct: x\nQuery: ")


def test_tiny_nvembed_checkpoint_matches_the_reference(tmp_path):
    checkpoint = write_tiny_nvembed_checkpoint(tmp_path / "ckpt", seed=5, shards=2)
    embedder = Embedder(model=str(checkpoint), device="cpu", dtype="float32", task="specialty")
    assert embedder.ref.kind == "nvembed" and embedder.dim == 64
    assert embedder.instruction.startswith("Instruct: Identify the medical specialty")
    got = embedder.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    ids = official_inputs(embedder.tokenizer.hf, TEXTS, embedder.instruction)
    for row, (sequence, mask) in enumerate(zip(ids["input_ids"], ids["attention_mask"])):
        want = reference_embed(
            checkpoint, sequence[mask.bool()].tolist(), embedder.encoder.pool_skip(embedder.instruction)
        )
        np.testing.assert_allclose(got[row], want, atol=1e-5)


def test_import_embednv_stays_light():
    code = "import sys, embednv; assert 'torch' not in sys.modules and 'ray' not in sys.modules; print(embednv.Embedder.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Embedder"


def count_loads(monkeypatch) -> list[str]:
    """Every model load from here on, by name (the real loader still runs)."""
    from embednv.models import registry

    loads, real = [], registry.load_encoder
    monkeypatch.setattr(registry, "load_encoder", lambda ref, *args: loads.append(ref.name) or real(ref, *args))
    return loads


def test_one_loaded_model_embeds_queries_and_documents_as_two_would(tmp_path, monkeypatch):
    checkpoint = str(write_tiny_nvembed_checkpoint(tmp_path / "ckpt", seed=3, shards=1))
    loads = count_loads(monkeypatch)
    one = Embedder(model=checkpoint, device="cpu", dtype="float32")  # documents by default
    queries, documents = one.encode(TEXTS, task="similar-notes"), one.encode(TEXTS)
    assert len(loads) == 1
    query_embedder = Embedder(model=checkpoint, device="cpu", dtype="float32", task="similar-notes")
    document_embedder = Embedder(model=checkpoint, device="cpu", dtype="float32")
    np.testing.assert_allclose(queries, query_embedder.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(documents, document_embedder.encode(TEXTS), atol=1e-6)
    assert not np.allclose(queries, documents, atol=1e-3)  # the instruction changes tokens and pooling
    # The constructor's instruction stays the default; a call can also turn it off.
    np.testing.assert_allclose(query_embedder.encode(TEXTS, instruction=""), documents, atol=1e-6)
    free = "Given a note, find notes about the same organ system"
    want = Embedder(model=checkpoint, device="cpu", dtype="float32", task=free).encode(TEXTS)
    np.testing.assert_allclose(one.encode(TEXTS, task=free), want, atol=1e-6)
    with pytest.raises(ValueError, match="task or instruction, not both"):
        one.encode(TEXTS, task="specialty", instruction="Instruct: x\nQuery: ")


def test_cohort_query_uses_the_embedder_already_loaded(tmp_path, monkeypatch, minilm_embedder):
    import json

    from embednv import cohort
    from embednv.embed.output import MANIFEST
    from embednv.errors import CohortError

    checkpoint = str(write_tiny_nvembed_checkpoint(tmp_path / "ckpt", seed=4, shards=1))
    documents = Embedder(model=checkpoint, device="cpu", dtype="float32")
    emb = tmp_path / "emb"
    emb.mkdir()
    model = {"name": documents.ref.name, "kind": "nvembed", "revision": documents.ref.revision}
    (emb / MANIFEST).write_text(json.dumps({"model": model}))
    loads = count_loads(monkeypatch)
    got = cohort.query_vector(str(emb), "chest pain", embedder=documents)
    assert loads == []  # the query came from the documents' model
    np.testing.assert_allclose(got, cohort.query_vector(str(emb), "chest pain", device="cpu"), atol=1e-6)
    assert len(loads) == 1
    with pytest.raises(CohortError, match="The embedder given holds minilm, but .* was embedded with"):
        cohort.query_vector(str(emb), "chest pain", embedder=minilm_embedder)
