"""`embednv forget`: forgotten notes leave every file, even after a SIGKILL mid-way."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.embed.config import EmbedConfig
from embednv.embed.run import run_embed
from embednv.forget import forget
from embednv.index.build import build_index
from embednv.index.store import IndexDir
from embednv.sample_corpus import write_sample_corpus

FORGOTTEN = ["MRN-0000017-NOTE", "MRN-0000037-NOTE", "MRN-ERR-0077"]  # two embedded notes and an error row


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    """40 notes with MRN-like string ids, one error row, embedded in 4 shards, with a cohort index."""
    folder = tmp_path_factory.mktemp("forget")
    write_sample_corpus(str(folder / "sample.parquet"), 40, seed=2)
    texts = pq.read_table(folder / "sample.parquet").column("text").to_pylist()
    ids = [f"MRN-{i:07d}-NOTE" for i in range(1, 41)] + ["MRN-ERR-0077"]
    pq.write_table(pa.table({"note_id": ids, "text": texts + ["  "]}), folder / "notes.parquet")
    out = folder / "emb"
    settings = dict(model="minilm", max_tokens=128, rows_per_shard=10, window_rows=32, executor="local")
    run_embed(EmbedConfig(inputs=(str(folder / "notes.parquet"),), out=str(out), **settings))
    build_index(str(out))
    return out


def traces(folder: Path, ids: list[str], vectors: list[bytes]) -> list[str]:
    """Where any of `ids` or `vectors` still is: raw bytes of every file, and the decoded rows of every Parquet file."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data, name = path.read_bytes(), path.relative_to(folder).as_posix()
        found += [f"{name}: id bytes" for i in ids if i.encode() in data]
        found += [f"{name}: vector bytes" for v in vectors if v in data]
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            cells = {
                str(v)
                for c in table.columns
                if not pa.types.is_list(c.type) and not pa.types.is_fixed_size_list(c.type)
                for v in c.to_pylist()
            }
            found += [f"{name}: id in a column" for i in ids if i in cells]
            if "embedding" in table.column_names:
                rows = {np.asarray(v, np.float32).tobytes() for v in table.column("embedding").to_pylist()}
                found += [f"{name}: vector row" for v in vectors if v in rows]
    return found


def vectors_of(emb: Path, ids: list[str]) -> list[bytes]:
    """Each found id's vector as bytes twice: as the shards store it, and re-normalised as the reader hands it to
    the index and the map (`unit_vectors`); the two can differ in the last bit, and either is a trace."""
    from embednv.shards import unit_vectors

    table = pa.concat_tables(pq.read_table(p) for p in sorted(emb.glob("part-*.parquet")))
    stored = table.column("embedding").combine_chunks()
    unit = unit_vectors(stored, stored.type.list_size)
    row = {i: r for r, i in enumerate(table.column("note_id").to_pylist())}
    return [
        form
        for i in ids
        if i in row
        for form in (np.asarray(stored[row[i]].as_py(), np.float32).tobytes(), unit[row[i]].tobytes())
    ]


def id_file(tmp_path: Path) -> Path:
    path = tmp_path / "withdrawn.csv"
    path.write_text("note_id\n" + "\n".join(FORGOTTEN + ["MRN-NOT-THERE"]) + "\n")
    return path


def test_forget_removes_every_trace_and_reports_counts(emb, tmp_path):
    out = tmp_path / "emb"
    shutil.copytree(emb, out)
    vectors = vectors_of(out, FORGOTTEN)
    assert len(vectors) == 2 * 2  # two embedded notes, each in both forms
    before = traces(out, FORGOTTEN, vectors)  # the check can fail: it sees them before
    assert any("_errors/errors.parquet" in t for t in before) and any("part-" in t for t in before)
    assert any(".ids.arrow: id bytes" in t for t in before) and any(".faiss: vector bytes" in t for t in before)

    report = forget(str(out), str(id_file(tmp_path)))
    assert (report.given, report.in_shards, report.shards_edited, report.in_errors) == (4, 2, 2, 1)
    assert report.index_removed and IndexDir(str(out)).record() is None
    assert traces(out, FORGOTTEN, vectors) == []
    remaining = pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("part-*.parquet")))
    assert sorted(remaining.column("note_id").to_pylist()) == sorted(
        f"MRN-{i:07d}-NOTE" for i in range(1, 41) if i not in (17, 37)
    )
    again = forget(str(out), str(id_file(tmp_path)))  # nothing left to find
    assert (again.in_shards, again.in_errors, again.index_removed) == (0, 0, False)


KILL_AFTER_FIRST_SHARD = """
import os, signal, sys
from embednv.directories import OutputDir
from embednv.forget import forget

write = OutputDir.write_table
def write_then_die(self, name, table, metadata=None):
    write(self, name, table, metadata)
    os.kill(os.getpid(), signal.SIGKILL)
OutputDir.write_table = write_then_die
forget(sys.argv[1], sys.argv[2])
"""


def test_forget_killed_mid_way_finishes_when_run_again(emb, tmp_path):
    out = tmp_path / "emb"
    shutil.copytree(emb, out)
    vectors = vectors_of(out, FORGOTTEN)
    ids = id_file(tmp_path)
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_SHARD, str(out), str(ids)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert traces(out, FORGOTTEN, vectors)  # one shard done, the rest not yet
    assert not [n for n in os.listdir(out) if n.startswith("part-") and n.endswith(".tmp")]

    rerun = subprocess.run(
        [sys.executable, "-m", "embednv.cli", "forget", str(out), "--ids", str(ids)], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("forgot 4 ids in") and "1 rows from 1 shards" in rerun.stdout
    assert not any(i in rerun.stdout + rerun.stderr for i in FORGOTTEN)  # counts only
    assert traces(out, FORGOTTEN, vectors) == []


def test_forget_from_the_maps_made_of_the_embeddings(emb, tmp_path):
    """Runs once the map side (`embednv.mapping.forget`) is merged."""
    pytest.importorskip("embednv.mapping.forget")
    from embednv.mapping.run import MapConfig, run_map
    from embednv.mapping.tsne_params import TSNEParams

    out, map_dir = tmp_path / "emb", tmp_path / "map"
    shutil.copytree(emb, out)
    fast = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)  # a map to forget from, not a good one
    run_map(MapConfig(emb_dir=str(out), out_dir=map_dir, clusters=3, tsne=fast))
    vectors = vectors_of(out, FORGOTTEN)
    assert any("map.parquet" in t for t in traces(map_dir, FORGOTTEN, vectors))
    report = forget(str(out), str(id_file(tmp_path)), maps=(str(map_dir),))
    assert report.maps == {str(map_dir): 2}
    assert traces(out, FORGOTTEN, vectors) == [] and traces(map_dir, FORGOTTEN, vectors) == []


# Forgets from EMB and its map, SIGKILLed right after the map's first file is replaced, or right before
# its manifest (written last) is. Every map file is written to a temporary name, then renamed over
# the old one (`embednv.io.atomic_path`).
KILL_AT_MAP_FILE = """
import os, signal, sys
import embednv.directories
from embednv.forget import forget

emb, ids, map_dir, when = sys.argv[1:5]
replace, atomic_write = os.replace, embednv.directories.atomic_write
def replace_or_die(source, target):  # the map's files written through a local temporary (io.atomic_path)
    replace(source, target)
    if when == "first" and os.path.dirname(str(target)) == map_dir:
        os.kill(os.getpid(), signal.SIGKILL)
def atomic_write_or_die(filesystem, path, write):  # its JSON files, written through OutputDir
    def write_then_die(temporary):
        write(temporary)
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary is whole, not yet under its name
    dies = when == "manifest" and path == os.path.join(map_dir, "_manifest.json")
    atomic_write(filesystem, path, write_then_die if dies else write)
os.replace, embednv.directories.atomic_write = replace_or_die, atomic_write_or_die
forget(emb, ids, maps=(map_dir,))
"""


@pytest.mark.parametrize("when", ["first", "manifest"])
def test_forget_killed_while_rewriting_a_map_finishes_when_run_again(emb, tmp_path, when):
    """Killed after the map's first file or before its manifest: each file is whole, and a rerun removes all."""
    from embednv.mapping.run import MapConfig, run_map
    from embednv.mapping.tsne_params import TSNEParams

    out, map_dir, ids = tmp_path / "emb", tmp_path / "map", id_file(tmp_path)
    shutil.copytree(emb, out)
    fast = TSNEParams(early_exaggeration_iter=100, n_iter=150, n_jobs=1)
    run_map(MapConfig(emb_dir=str(out), out_dir=map_dir, clusters=3, tsne=fast))
    vectors = vectors_of(out, FORGOTTEN)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_MAP_FILE, str(out), str(ids), str(map_dir), when], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for parquet in map_dir.glob("*.parquet"):
        pq.read_table(parquet)  # what has a final name is whole
    manifest = json.loads((map_dir / "_manifest.json").read_text())
    assert manifest["n"] == 40 and "forgotten" not in manifest  # the manifest is the last file written
    if when == "first":
        assert traces(map_dir, FORGOTTEN, vectors), "killed before the map was done"
    else:
        assert traces(map_dir, FORGOTTEN, vectors) == []  # every other file is done

    rerun = subprocess.run(
        [sys.executable, "-m", "embednv.cli", "forget", str(out), "--ids", str(ids), "--map", str(map_dir)],
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert traces(out, FORGOTTEN, vectors) == [] and traces(map_dir, FORGOTTEN, vectors) == []
    assert not [p.name for p in map_dir.iterdir() if p.name.endswith(".tmp")]  # the killed run's, swept
    manifest = json.loads((map_dir / "_manifest.json").read_text())
    assert manifest["n"] == pq.read_metadata(map_dir / "map.parquet").num_rows == 38
    assert [f["count"] for f in manifest["forgotten"]] == [2]
