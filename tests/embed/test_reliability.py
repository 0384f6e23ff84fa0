"""Never lose a note: crashes, worker deaths, garbage input, and PHI kept out of every log."""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from embednv.embed.config import EmbedConfig
from embednv.embed.run import run_embed
from embednv.sample_corpus import write_sample_corpus

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def cli(*args, **kwargs):
    return [sys.executable, "-m", "embednv.cli", *args]


def embeddings_by_id(out) -> dict:
    table = pads.dataset(str(out), format="parquet").to_table()
    ids = table.column("note_id").to_pylist()
    assert len(ids) == len(set(ids)), "an id appears twice"
    return dict(zip(ids, np.stack(table.column("embedding").to_numpy(zero_copy_only=False))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "notes.parquet"
    write_sample_corpus(str(path), 60, seed=5)
    return path


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_output(corpus, tmp_path):
    args = [
        "embed",
        str(corpus),
        "--model",
        "minilm",
        "--max-tokens",
        "128",
        "--rows-per-shard",
        "5",
        "--window-rows",
        "5",
    ]
    reference = tmp_path / "reference"  # the uninterrupted run, here on the local executor: no second Ray start
    run_embed(
        EmbedConfig(
            inputs=(str(corpus),),
            out=str(reference),
            model="minilm",
            max_tokens=128,
            rows_per_shard=5,
            executor="local",
        )
    )

    out = tmp_path / "killed"
    # A new session: SIGKILL to the group takes the driver and its local Ray down at once, like a lost node.
    process = subprocess.Popen(
        cli(*args, "--out", str(out)),
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(glob.glob(str(out / "part-*.parquet"))) < 3:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    written = sorted(glob.glob(str(out / "part-*.parquet")))
    assert 3 <= len(written) < 12 and not (out / "_SUCCESS").exists()
    for shard in written:  # whatever is visible under a final name is whole
        pq.read_table(shard)

    # The rerun resumes on the local executor: resume is the planner's (embed/run.py), shared by both
    # executors (embed/test_run.py shows they write the same shards); what Ray alone adds is the kill above.
    local = ["--executor", "local"]
    rerun = subprocess.run(cli(*args, "--out", str(out), *local), env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    expected, got = embeddings_by_id(reference), embeddings_by_id(out)
    assert sorted(got) == sorted(expected) == list(range(1, 61))
    assert max(float(np.abs(got[i] - expected[i]).max()) for i in got) < 1e-5
    again = subprocess.run(cli(*args, "--out", str(out), *local), env=ENV, capture_output=True, text=True)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_changed_inputs_are_refused_unless_overwrite(tmp_path):
    first, other, out = tmp_path / "first.parquet", tmp_path / "other.parquet", tmp_path / "emb"
    write_sample_corpus(str(first), 20, seed=5)
    write_sample_corpus(str(other), 30, seed=9)
    settings = dict(out=str(out), model="minilm", max_tokens=128, executor="local")
    run_embed(EmbedConfig(inputs=(str(first),), **settings))
    # The refusal as a user meets it: exit 2 and one line, before any model loads.
    base = ["embed", str(other), "--model", "minilm", "--max-tokens", "128", "--out", str(out), "--executor", "local"]
    refused = subprocess.run(cli(*base), env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2 and "inputs changed" in refused.stderr and "--overwrite" in refused.stderr
    assert "model loaded" not in refused.stderr and sorted(embeddings_by_id(out)) == list(range(1, 21))
    run_embed(EmbedConfig(inputs=(str(other),), overwrite=True, **settings))
    assert sorted(embeddings_by_id(out)) == list(range(1, 31))


def test_a_killed_embedding_actor_loses_no_row(ray_local, corpus, tmp_path):
    import psutil

    out = tmp_path / "emb"
    config = EmbedConfig(
        inputs=(str(corpus),), out=str(out), model="minilm", max_tokens=128, rows_per_shard=5, window_rows=5
    )
    killed = []

    def kill_actor_once_it_works():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if glob.glob(str(out / "part-*.parquet")):  # mid-run: some shards written, most not
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "EmbedWorker" in " ".join(proc.info["cmdline"] or []):
                        proc.kill()
                        killed.append(proc.info["pid"])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_actor_once_it_works, daemon=True)
    killer.start()
    summary = run_embed(config)
    killer.join(timeout=5)
    assert killed, "the test never found the embedding actor to kill"
    assert len(glob.glob(str(out / "part-*.parquet"))) == 12
    assert summary.embedded == 60 and summary.errored == 0
    assert sorted(embeddings_by_id(out)) == list(range(1, 61))


def test_garbage_rows_become_error_rows_and_a_huge_note_is_chunked(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_bytes(b'note_id,text\n1,"fine note"\n2,"bad \xfe\xff utf8"\n3,""\n4,"   "\n,"no id"\n1,"duplicate"\n')
    jsonl = tmp_path / "b.jsonl"
    huge = (
        "Patient reports chest pain and shortness of breath. " * 1_000
    )  # ~52,000 characters, 18 windows: more than one micro-batch
    jsonl.write_bytes(
        b"\n".join(
            [
                json.dumps({"note_id": 5, "text": None}).encode(),
                json.dumps({"note_id": 6, "text": 17}).encode(),
                b'{"note_id": 7, "text": "trunc',
                json.dumps({"note_id": 8, "text": huge}).encode(),
                json.dumps({"note_id": 9, "text": "caf\u00e9"}).encode().replace(b"caf\\u00e9", b"caf\xe9"),
            ]
        )
        + b"\n"
    )
    out = tmp_path / "emb"
    summary = run_embed(EmbedConfig(inputs=(str(csv), str(jsonl)), out=str(out), model="minilm", executor="local"))
    shards = pads.dataset(str(out), format="parquet").to_table()
    assert sorted(shards.column("note_id").to_pylist()) == ["1", "8"]  # CSV and JSONL ids as written
    huge_row = [r for r in shards.to_pylist() if r["note_id"] == "8"][0]
    assert huge_row["n_chunks"] > 15 and np.isclose(np.linalg.norm(huge_row["embedding"]), 1, atol=1e-5)
    errors = {
        (r["note_id"], r["row"]): r["reason"] for r in pq.read_table(out / "_errors" / "errors.parquet").to_pylist()
    }
    assert errors.pop(("9", 4)).startswith("invalid UTF-8 in line 5 at byte")
    assert errors == {
        ("2", 1): "invalid UTF-8 in text at byte 4",
        ("3", 2): "text is empty or whitespace only",
        ("4", 3): "text is empty or whitespace only",
        (None, 4): "id is null",
        ("1", 5): "duplicate id (its first occurrence is kept)",
        ("5", 0): "text is null",
        ("6", 1): "text is not a string (int)",
        (None, 2): "line 3 is not valid JSON (Unterminated string starting at)",
    }
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == 11 == manifest["rows_embedded"] + manifest["rows_errored"]
    assert summary.errored == 9


def test_skip_bad_files_lists_them_in_the_manifest(tmp_path):
    corpus, broken = tmp_path / "notes.parquet", tmp_path / "broken.parquet"
    write_sample_corpus(str(corpus), 24, seed=5)
    broken.write_bytes(b"PAR1 not really")
    out = tmp_path / "emb"
    run_embed(
        EmbedConfig(
            inputs=(str(corpus), str(broken)),
            out=str(out),
            model="minilm",
            max_tokens=128,
            skip_bad_files=True,
            executor="local",
        )
    )
    manifest = json.loads((out / "_manifest.json").read_text())
    assert [s["uri"] for s in manifest["skipped_files"]] == [str(broken)]
    assert "not a readable Parquet file" in manifest["skipped_files"][0]["reason"]
    assert manifest["rows_embedded"] == 24


def test_no_note_text_reaches_logs_manifest_or_errors(tmp_path):
    markers = [f"PHIMARK{i:03d}ZQ" for i in range(6)]
    csv = tmp_path / "notes.csv"
    rows = [f'{i},"Patient {m} seen in clinic for cough."' for i, m in enumerate(markers[:3])]
    csv.write_bytes(
        ("note_id,text\n" + "\n".join(rows) + "\n").encode()
        + f'3,"{markers[3]} bad '.encode()
        + b"\xff"
        + b'"\n'
        + f'4,"{markers[4]} unterminated quote\n'.encode()
    )
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(
        json.dumps({"note_id": 10, "text": f"{markers[5]} again"}) + '\n{"note_id": 11, "text": "PHIMARK999ZQ broken\n'
    )
    started = time.time()
    out = tmp_path / "emb"
    result = subprocess.run(
        cli("embed", str(csv), str(jsonl), "--out", str(out), "--model", "minilm", "--debug", "--skip-bad-files"),
        env=ENV,
        capture_output=True,
        text=True,
    )
    # The CSV has an unterminated quote: skipped as a bad file (its row text must not be quoted in the reason).
    assert result.returncode == 0, result.stderr[-3000:]
    searched = {"stdout": result.stdout, "stderr": result.stderr}
    for name in os.listdir(out):
        if name.startswith("_") and os.path.isfile(out / name):
            searched[name] = (out / name).read_bytes().decode("latin-1")
    for session in glob.glob("/tmp/ray/session_*/logs"):
        if os.path.getmtime(session) >= started - 5:
            for log in Path(session).rglob("*"):
                if log.is_file():
                    searched[str(log)] = log.read_bytes().decode("latin-1")
    assert any("session_" in name for name in searched), "no Ray session log was searched"
    for where, content in searched.items():
        for marker in markers + ["PHIMARK999ZQ"]:
            assert marker not in content, f"{marker} leaked into {where}"


def test_output_files_respect_the_umask(tmp_path):
    notes = tmp_path / "n.parquet"
    pq.write_table(pa.table({"note_id": [1], "text": ["Cough."]}), notes)
    previous = os.umask(0o027)
    try:
        run_embed(EmbedConfig(inputs=(str(notes),), out=str(tmp_path / "emb"), model="minilm", executor="local"))
    finally:
        os.umask(previous)
    for name in os.listdir(tmp_path / "emb"):
        assert os.stat(tmp_path / "emb" / name).st_mode & 0o027 == 0, name
