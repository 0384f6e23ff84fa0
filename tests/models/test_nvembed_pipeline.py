"""NV-Embed-v2 through the whole embed command: a tiny official-layout checkpoint, CPU, float32."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nvembed_fixtures import write_tiny_nvembed_checkpoint
from test_nvembed import official_inputs, reference_embed

from embednv.models.nvembed import load_nvembed_tokenizer

NOTES = {11: "Patient presents with chest pain.", 12: "History of type 2 diabetes on metformin.", 13: "Vitals stable."}
INSTRUCTION = "Instruct: Given a clinical note, retrieve similar notes\nQuery: "


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nvembed_e2e")
    checkpoint = write_tiny_nvembed_checkpoint(folder / "ckpt", seed=3, shards=2)
    notes = folder / "notes.parquet"
    pq.write_table(pa.table({"note_id": list(NOTES), "text": list(NOTES.values())}), notes)
    return folder, checkpoint, notes


def embed_cli(notes, out, checkpoint, *extra):
    command = [
        sys.executable,
        "-m",
        "embednv.cli",
        "embed",
        str(notes),
        "--out",
        str(out),
        "--model",
        str(checkpoint),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--executor",  # the model through the CLI, not Ray (tests/embed/test_run.py compares the executors)
        "local",
        *extra,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    )
    assert result.returncode == 0, result.stderr
    return {r["note_id"]: np.asarray(r["embedding"]) for r in pq.read_table(out / "part-00000.parquet").to_pylist()}


@pytest.mark.parametrize("instruction", ["", INSTRUCTION], ids=["document", "query"])
def test_embed_command_matches_the_reference_forward(setup, instruction):
    folder, checkpoint, notes = setup
    out = folder / f"out-{bool(instruction)}"
    got = embed_cli(notes, out, checkpoint, *(["--instruction", instruction] if instruction else []))
    tokenizer = load_nvembed_tokenizer(checkpoint)
    # The official pool mask: the first len(tokenize(instruction)) positions, counted from BOS.
    n_skip = len(tokenizer.tokenize(instruction)) if instruction else 0
    for note_id, text in NOTES.items():
        ids = official_inputs(tokenizer, [text], instruction)["input_ids"][0].tolist()
        expected = reference_embed(checkpoint, ids, n_skip)
        assert got[note_id].shape == expected.shape
        assert np.abs(got[note_id] - expected).max() < 1e-5
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["model"]["kind"] == "nvembed" and manifest["instruction"] == instruction
    assert manifest["model"]["revision"].startswith("sha256:")
