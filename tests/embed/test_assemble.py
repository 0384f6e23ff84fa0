"""ShardAssembler and OutputDir on their own: no Ray, real Parquet files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embednv.columns import EMBEDDING, ERROR, HASH, N_CHUNKS, N_TOKENS, PADDED, ROW, SHARD, TEXT_HASH, WINDOW_TOKENS
from embednv.directories import ERROR_PARTS, MANIFEST, OutputDir, shard_name
from embednv.embed.assemble import ShardAssembler
from embednv.embed.inputs import InputFile, InputPlan, Shard

DIM = 4


def _plan(rows_per_file=(5, 3), rows_per_shard=3) -> InputPlan:
    files, shards = [], []
    for f, n in enumerate(rows_per_file):
        files.append(InputFile(f"notes-{f}.csv", "csv", 1, 1, n, "int64"))
        for start in range(0, n, rows_per_shard):
            shards.append(Shard(len(shards), f, start, min(start + rows_per_shard, n)))
    return InputPlan(tuple(files), tuple(shards), pa.int64())


def _block(plan: InputPlan, pairs: list[tuple[int, int]], errors: dict[tuple[int, int], str] | None = None) -> pa.Table:
    """Embedded rows (shard, row): id = 100 * file + row, vector = [row, shard, 0, 0]."""
    errors = errors or {}
    ids = [100 * plan.shards[s].file + r for s, r in pairs]
    vectors = [None if (s, r) in errors else [float(r), float(s), 0.0, 0.0] for s, r in pairs]
    return pa.table(
        {
            "note_id": pa.array(ids, pa.int64()),
            SHARD: pa.array([s for s, _ in pairs], pa.int32()),
            ROW: pa.array([r for _, r in pairs], pa.int64()),
            ERROR: pa.array([errors.get(p) for p in pairs], pa.string()),
            EMBEDDING: pa.array(vectors, pa.list_(pa.float32(), DIM)),
            N_TOKENS: pa.array([7] * len(pairs), pa.int64()),
            N_CHUNKS: pa.array([1] * len(pairs), pa.int32()),
            PADDED: pa.array([10] * len(pairs), pa.int64()),
            WINDOW_TOKENS: pa.array([9] * len(pairs), pa.int64()),
            HASH: pa.array([None if (s, r) in errors else f"h{s}-{r}" for s, r in pairs], pa.string()),
        }
    )


def _read(out: OutputDir, shard: int) -> pa.Table:
    return pq.read_table(f"{out.path}/{shard_name(shard)}")


def test_blocks_out_of_order_give_shards_in_input_order(tmp_path):
    plan = _plan()  # shards: 0 = file 0 rows 0-2, 1 = file 0 rows 3-4, 2 = file 1 rows 0-2
    out = OutputDir(str(tmp_path))
    assembler = ShardAssembler(plan, out, "note_id", DIM)
    assert assembler.add(_block(plan, [(2, 2), (1, 4), (0, 1)])) == []
    assert assembler.add(_block(plan, [(0, 2), (2, 0)])) == []
    assert assembler.add(_block(plan, [(1, 3), (0, 0)])) == [0, 1]  # both complete in this block
    assert out.finished_shards() == {0, 1}
    assert assembler.incomplete() == {2: (2, 3)}
    assert assembler.add(_block(plan, [(2, 1)])) == [2]
    assert assembler.incomplete() == {}
    assert _read(out, 0).column("note_id").to_pylist() == [0, 1, 2]
    assert _read(out, 1).column("note_id").to_pylist() == [3, 4]
    assert _read(out, 2).column("note_id").to_pylist() == [100, 101, 102]
    assert _read(out, 2).column(EMBEDDING).to_pylist()[1] == [1.0, 2.0, 0.0, 0.0]
    assert _read(out, 0).schema.names == ["note_id", EMBEDDING, N_TOKENS, N_CHUNKS, TEXT_HASH]  # nothing private leaks
    assert out.shard_stats(shard_name(1)) == (
        2,
        {"rows": 2, "embedded": 2, "errored": 0, "tokens": 14, "window_tokens": 18, "padded_tokens": 20},
    )


def test_rows_delivered_twice_by_a_retried_task_are_kept_once(tmp_path):
    plan = _plan((3,), 3)
    out = OutputDir(str(tmp_path))
    assembler = ShardAssembler(plan, out, "note_id", DIM)
    assert assembler.add(_block(plan, [(0, 0), (0, 1)])) == []
    assert assembler.add(_block(plan, [(0, 0), (0, 1)])) == []  # the retry re-sends both rows
    assert assembler.add(_block(plan, [(0, 1), (0, 2)])) == [0]
    assert _read(out, 0).column("note_id").to_pylist() == [0, 1, 2]
    assert assembler.written[0]["rows"] == 3


def test_rows_delivered_again_after_their_shard_was_written_are_ignored(tmp_path):
    plan = _plan((5,), 3)  # shard 0 = rows 0-2, shard 1 = rows 3-4
    out = OutputDir(str(tmp_path))
    assembler = ShardAssembler(plan, out, "note_id", DIM)
    assert assembler.add(_block(plan, [(0, 0), (0, 1), (0, 2), (1, 3)])) == [0]
    written = (tmp_path / shard_name(0)).stat().st_mtime_ns
    # A retried task re-sends its whole window, rows of the written shard among them.
    assert assembler.add(_block(plan, [(0, 0), (0, 1), (0, 2), (1, 3)])) == []
    assert assembler.add(_block(plan, [(0, 2), (1, 4)])) == [1]
    assert assembler.incomplete() == {}
    assert [stats["rows"] for stats in assembler.written] == [3, 2]
    assert (tmp_path / shard_name(0)).stat().st_mtime_ns == written  # not written twice
    assert _read(out, 0).column("note_id").to_pylist() == [0, 1, 2]
    assert _read(out, 1).column("note_id").to_pylist() == [3, 4]
    assert assembler._seen == {}  # nothing kept per row once every shard is on disk


def test_error_rows_go_to_the_error_part_with_file_row_and_reason(tmp_path):
    plan = _plan((3,), 3)
    out = OutputDir(str(tmp_path))
    assembler = ShardAssembler(plan, out, "note_id", DIM)
    assert assembler.add(_block(plan, [(0, 2), (0, 1), (0, 0)], errors={(0, 1): "empty text"})) == [0]
    assert _read(out, 0).column("note_id").to_pylist() == [0, 2]
    errors = out.read_table(f"{ERROR_PARTS}/{shard_name(0)}")
    assert errors.to_pylist() == [{"note_id": 1, "file": "notes-0.csv", "row": 1, "reason": "empty text"}]
    assert out.shard_stats(shard_name(0))[1]["errored"] == 1


def test_output_dir_writes_atomically_and_clears_only_its_own_files(tmp_path):
    out = OutputDir(str(tmp_path / "out"))
    assert out.read_json(MANIFEST) is None and out.finished_shards() == set()
    out.write_text(MANIFEST, '{"fingerprint": "abc"}')
    out.write_table(shard_name(3), pa.table({"x": [1]}), metadata={"rows": 1})
    out.write_table(f"{ERROR_PARTS}/{shard_name(3)}", pa.table({"x": [1]}))
    (tmp_path / "out" / "notes-by-user.txt").write_text("keep me")
    (tmp_path / "out" / f".{shard_name(4)}.deadbeef.tmp").write_text("half a shard from a killed run")
    assert out.read_json(MANIFEST) == {"fingerprint": "abc"}
    assert out.finished_shards() == {3}  # the temporary is not a shard
    assert out.shard_stats(shard_name(3)) == (1, {"rows": 1})
    assert out.remove_stale_temporaries() == 1
    out.clear()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes-by-user.txt"]


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    out = OutputDir(str(tmp_path))

    def broken(path: str) -> None:
        with open(path, "w") as handle:
            handle.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        out._atomic(shard_name(0), broken)
    assert list(tmp_path.iterdir()) == []


def test_file_uris_work_like_paths(tmp_path):
    out = OutputDir(f"file://{tmp_path}")
    out.write_table(shard_name(0), pa.table({"x": np.arange(3)}))
    assert OutputDir(str(tmp_path)).finished_shards() == {0}
