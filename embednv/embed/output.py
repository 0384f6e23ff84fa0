"""The output directory: atomic shard writes, the manifest, and what a rerun finds there.

Every file goes through `embednv.io.atomic_write`, so a reader (or a rerun after a crash)
never sees half a shard, locally or on an object store.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from embednv.directories import ERROR_PARTS, ERRORS, INDEX_DIR, MANIFEST, SHARD_NAME, SUCCESS, kind_of, shard_name
from embednv.io import atomic_write, filesystem_and_path, is_temporary

__all__ = ["ERROR_PARTS", "ERRORS", "MANIFEST", "SUCCESS", "OutputDir", "shard_name"]
STATS_KEY = b"embednv.stats"  # per-shard token counts, kept in the Parquet footer


class OutputDir:
    """A local directory or a pyarrow-filesystem URI (s3://, gs://, file://)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.path = filesystem_and_path(uri)

    def _full(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self._full(name)).type != fs.FileType.NotFound

    def names(self, folder: str = "") -> list[str]:
        from pyarrow import fs

        root = self._full(folder) if folder else self.path
        if self.fs.get_file_info(root).type != fs.FileType.Directory:
            return []
        return sorted(i.base_name for i in self.fs.get_file_info(fs.FileSelector(root)))

    def kind(self) -> str | None:
        """What this directory holds now: embeddings, a map, or nothing of embednv's (`directories.kind_of`)."""
        return kind_of(self.names(), self.read_json(MANIFEST))

    def finished_shards(self) -> set[int]:
        return {int(m.group(1)) for m in map(SHARD_NAME.match, self.names()) if m}

    def clear(self) -> None:
        """Remove embednv's own files only: never delete what a user put beside them."""
        for name in self.names():
            if SHARD_NAME.match(name) or name in (SUCCESS, MANIFEST, ERRORS) or is_temporary(name):
                self.fs.delete_file(self._full(name))
        if self.names(ERROR_PARTS):
            self.fs.delete_dir(self._full(ERROR_PARTS))
        if self.names(INDEX_DIR):  # `embednv index`'s: built from the shards just removed
            self.fs.delete_dir(self._full(INDEX_DIR))

    def remove_stale_temporaries(self) -> int:
        """Delete half-written files a killed run left behind (never visible under a final name)."""
        stale = [
            f"{folder + '/' if folder else ''}{name}"
            for folder in ("", ERROR_PARTS)
            for name in self.names(folder)
            if is_temporary(name)
        ]
        for name in stale:
            self.fs.delete_file(self._full(name))
        return len(stale)

    def write_table(self, name: str, table: pa.Table, metadata: dict | None = None) -> None:
        if metadata:
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), STATS_KEY: json.dumps(metadata).encode()}
            )
        self._atomic(name, lambda path: pq.write_table(table, path, filesystem=self.fs, compression="zstd"))

    def write_text(self, name: str, text: str) -> None:
        def write(path: str) -> None:
            with self.fs.open_output_stream(path) as stream:
                stream.write(text.encode())

        self._atomic(name, write)

    def read_json(self, name: str) -> dict | None:
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(self._full(name)) as stream:
            return json.loads(stream.read().decode())

    def shard_stats(self, name: str) -> tuple[int, dict]:
        """Rows and token statistics of a finished shard, from its footer alone."""
        with self.fs.open_input_file(self._full(name)) as handle:
            meta = pq.ParquetFile(handle).metadata
            stats = (meta.metadata or {}).get(STATS_KEY)
            return meta.num_rows, json.loads(stats) if stats else {}

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self._full(name), filesystem=self.fs)

    def delete(self, name: str) -> None:
        if self.exists(name):
            info = self.fs.get_file_info(self._full(name))
            (self.fs.delete_dir if info.type.name == "Directory" else self.fs.delete_file)(self._full(name))

    def _atomic(self, name: str, write) -> None:
        folder = name.rpartition("/")[0]
        self.fs.create_dir(self._full(folder) if folder else self.path, recursive=True)
        atomic_write(self.fs, self._full(name), write)
