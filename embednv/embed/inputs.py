"""What a plan is made of: the input files, the shards cut from them, and the plan itself.

Built once on the driver by `embednv.embed.plan`, sent to every read task; a shard is a fixed
row range of one file and becomes exactly one output file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class InputFile:
    uri: str  # as the user wrote it or as it was expanded from a directory or glob
    format: str  # "parquet", "csv" or "jsonl"
    size: int
    mtime_ns: int
    n_rows: int = 0
    id_type: str = ""  # str() of the pyarrow type, kept for the output schema


@dataclass(frozen=True)
class Shard:
    index: int  # global shard number: output file part-{index:05d}.parquet
    file: int  # position in InputPlan.files
    start: int  # first row (0-based, in file order)
    stop: int  # one past the last row
    # `embed --update`: the rows of [start, stop) to embed (new or changed notes); None = all of them.
    rows: frozenset[int] | None = None

    @property
    def n_rows(self) -> int:
        """Rows this shard sends through the model (and the assembler waits for)."""
        return self.stop - self.start if self.rows is None else len(self.rows)


@dataclass(frozen=True)
class InputPlan:
    files: tuple[InputFile, ...]
    shards: tuple[Shard, ...]
    id_type: pa.DataType
    duplicates: dict[int, frozenset[int]] = field(default_factory=dict)  # file -> rows repeating an earlier id
    skipped_files: tuple[tuple[str, str], ...] = ()  # (uri, reason) with --skip-bad-files

    @property
    def n_rows(self) -> int:
        return sum(f.n_rows for f in self.files)
