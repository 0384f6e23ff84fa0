"""Acceptance on real clinical text (MTSamples from ../shared/data); skipped cleanly when absent."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from minilm_reference import direct_minilm

from embednv.embed.batching import padding_efficiency, plan_batches
from embednv.embed.config import DEFAULT_BATCH_TOKENS, EmbedConfig
from embednv.embed.run import run_embed
from embednv.embed.tokenize import cached_note_tokenizer
from embednv.models.registry import resolve_model


def test_padding_efficiency_on_all_of_mtsamples(mtsamples_path):
    """The worker's batching (1,024-row windows, CPU budget) on every MTSamples note: >= 0.95."""
    texts = [
        t for t in pq.read_table(mtsamples_path, columns=["transcription"]).column(0).to_pylist() if t and t.strip()
    ]
    tokenizer = cached_note_tokenizer(resolve_model("minilm", has_gpu=False), "")
    window_lengths = [  # each 1,024-row window's model inputs, as the worker batches them
        [len(w) for note in tokenizer(texts[i : i + 1024]) for w in note.windows] for i in range(0, len(texts), 1024)
    ]
    lengths = [n for lw in window_lengths for n in lw]  # every model input, in file order
    batched = [padding_efficiency(lw, plan_batches(lw, DEFAULT_BATCH_TOKENS["cpu"])) for lw in window_lengths]
    real = sum(sum(lw) for lw in window_lengths)
    padded = sum(sum(lw) / e for lw, e in zip(window_lengths, batched))
    assert real / padded >= 0.95
    naive = sum(lengths) / sum(max(lengths[i : i + 32]) * len(lengths[i : i + 32]) for i in range(0, len(lengths), 32))
    assert naive < 0.9  # file order pads far more: what the sorting buys


@pytest.fixture(scope="module")
def subset(mtsamples_path, tmp_path_factory):
    """All empty transcriptions plus the first 30 others (22 within MiniLM's 512 tokens, 8 longer): the whole
    file takes minutes on 2 CPUs."""
    table = pq.read_table(mtsamples_path, columns=["note_id", "transcription"])
    empty = pc.or_kleene(
        pc.is_null(table["transcription"]), pc.equal(pc.utf8_trim_whitespace(table["transcription"]), "")
    )
    picked = pa.concat_tables([table.filter(empty), table.filter(pc.invert(empty)).slice(0, 30)])
    path = tmp_path_factory.mktemp("mtsamples") / "subset.parquet"
    pq.write_table(picked, path)
    return path, picked


def test_every_note_once_with_exact_embeddings(subset, tmp_path):
    path, picked = subset
    out = tmp_path / "emb"
    run_embed(
        EmbedConfig(
            inputs=(str(path),),
            out=str(out),
            model="minilm",
            text_column="transcription",
            rows_per_shard=64,
            executor="local",
        )
    )
    shards = pads.dataset(str(out), format="parquet").to_table()
    errors = pq.read_table(out / "_errors" / "errors.parquet")
    ids = shards.column("note_id").to_pylist() + errors.column("note_id").to_pylist()
    assert sorted(ids) == sorted(picked.column("note_id").to_pylist())
    assert len(errors) >= 1 and set(errors.column("reason").to_pylist()) <= {
        "text is null",
        "text is empty or whitespace only",
    }
    assert shards.schema.field("note_id").type == pa.int32()
    vectors = np.stack(shards.column("embedding").to_numpy(zero_copy_only=False))
    assert vectors.shape[1] == 384 and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    rows = shards.to_pylist()
    assert all(r["n_chunks"] > 1 for r in rows if r["n_tokens"] > 512)
    assert any(r["n_tokens"] > 512 for r in rows)
    texts = dict(zip(picked.column("note_id").to_pylist(), picked.column("transcription").to_pylist()))
    fitting = [r for r in rows if r["n_chunks"] == 1][:10]
    for row, expected in zip(fitting, direct_minilm([texts[r["note_id"]] for r in fitting])):
        assert float(np.dot(row["embedding"], expected)) >= 0.9999
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == len(picked) == manifest["rows_embedded"] + manifest["rows_errored"]
