"""directories.OutputDir: the one owner of an embeddings or map directory's files and JSON."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.directories import (
    EMBEDDINGS,
    MANIFEST,
    MAP,
    MAP_FILES,
    OutputDir,
    footer_stats,
    own_temporary,
    shard_name,
)


def test_json_round_trip_with_numpy_scalars_paths_and_tuples(tmp_path):
    out = OutputDir(str(tmp_path / "map"))
    out.write_json(
        MANIFEST, {"kind": MAP, "n": np.int64(40), "score": np.float32(0.5), "src": Path("/a/b"), "k": (1, 2)}
    )
    text = (tmp_path / "map" / MANIFEST).read_text()
    assert text.endswith("}\n") and '\n  "n": 40,' in text  # indented, one trailing newline
    assert out.read_json(MANIFEST) == {"kind": MAP, "n": 40, "score": 0.5, "src": "/a/b", "k": [1, 2]}
    assert out.kind() == MAP and sorted(p.name for p in (tmp_path / "map").iterdir()) == [MANIFEST]  # no temporary left
    assert out.read_json("metrics.json") is None
    with pytest.raises(TypeError, match="not JSON serialisable: set"):
        out.write_json("bad.json", {"ids": {1, 2}})
    assert out.read_json("bad.json") is None  # nothing is written for an object JSON cannot hold


def test_shard_footer_stats_are_read_back_and_absent_ones_are_empty(tmp_path):
    out = OutputDir(str(tmp_path / "emb"))
    out.write_table(shard_name(0), pa.table({"note_id": [1, 2]}), metadata={"rows": 2, "tokens": 17})
    out.write_table(shard_name(1), pa.table({"note_id": [3]}))
    assert out.shard_stats(shard_name(0)) == (2, {"rows": 2, "tokens": 17})
    assert out.shard_stats(shard_name(1)) == (1, {})
    assert footer_stats(None) == {} and footer_stats({b"other": b"x"}) == {}
    assert out.finished_shards() == {0, 1} and out.kind() == EMBEDDINGS
    assert json.loads(pq.read_schema(tmp_path / "emb" / shard_name(0)).metadata[b"embednv.stats"]) == {
        "rows": 2,
        "tokens": 17,
    }


def test_own_temporaries_are_told_from_other_files():
    assert own_temporary(".map.png.1a2b3c4d.tmp", MAP_FILES) and own_temporary(
        "._manifest.json.00ff00ff.tmp", MAP_FILES
    )
    assert not own_temporary(".notes.csv.1a2b3c4d.tmp", MAP_FILES)  # someone else's file
    assert not own_temporary("map.png", MAP_FILES) and not own_temporary(".map.png.short.tmp", MAP_FILES)
