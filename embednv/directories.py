"""The directories embednv writes, embeddings and maps: their files, their kind, and one class to read and write them.

Both kinds keep a `_manifest.json`, so a command pointed at the other's directory (`embed --out
MAP`, `map EMB --out EMB`) would replace that manifest and leave a directory neither reads: each
command asks `OutputDir.kind()` first and refuses the other's, `--overwrite` included. Every
file goes through `embednv.io.atomic_write`, so a reader (or a rerun after a crash) never sees
half a file, locally or on an object store. Local paths and pyarrow URIs (s3://, gs://, file://)
alike.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from embednv.io import atomic_write, filesystem_and_path, is_temporary

if TYPE_CHECKING:
    import pyarrow as pa

EMBEDDINGS, MAP = "embeddings", "map"

MANIFEST = "_manifest.json"
# Embeddings: shards, then the errors and the marker written last. The errors live in a folder so that
# `read_parquet('EMB/*.parquet')` (DuckDB, Polars) sees the shards only; pyarrow and pandas skip `_` names.
SUCCESS, ERRORS_DIR = "_SUCCESS", "_errors"
ERRORS, ERROR_PARTS = f"{ERRORS_DIR}/errors.parquet", f"{ERRORS_DIR}/parts"
LEGACY_ERRORS = "_errors.parquet"  # where embednv before 0.2 kept them: still recognised, scrubbed by forget
INDEX_DIR = "_index"  # `embednv index`: the nearest-neighbour index, beside the shards (embednv/index/store.py)
INDEX_RECORD = f"{INDEX_DIR}/index.json"  # the current index build's record: present when there is an index
SHARD_NAME = re.compile(r"^part-(\d{5,})\.parquet$")
SHARD_GLOB = "part-*.parquet"  # for people and DuckDB: `read_parquet('EMB/part-*.parquet')`
EMBEDDINGS_MARKERS = (SUCCESS, ERRORS_DIR, LEGACY_ERRORS)
STATS_KEY = b"embednv.stats"  # per-shard token counts, kept in the Parquet footer
# A map: one row per note, the clusters, and the pages people open; the manifest is written last.
MAP_FILE, CLUSTERS_FILE, CLUSTERS_MD = "map.parquet", "clusters.parquet", "clusters.md"
PNG_FILE, HTML_FILE, METRICS_FILE = "map.png", "map.html", "metrics.json"
# What `map --update` and `forget` need (mapping/state.py): hidden names, outside `*.parquet` readers' globs.
PCA_STATE, POINTS_STATE = "_pca.npz", "_points.parquet"
MAP_FILES = (
    MANIFEST,
    MAP_FILE,
    CLUSTERS_FILE,
    CLUSTERS_MD,
    PNG_FILE,
    HTML_FILE,
    METRICS_FILE,
    PCA_STATE,
    POINTS_STATE,
)  # manifest first
MAP_TOOL = "embednv map"  # the `tool` of map manifests written before they said their `kind`


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def is_shard(name: str) -> bool:
    """Any `part-*.parquet` (embednv's `part-00042.parquet`, or a Spark writer's `part-00000-<uuid>.parquet`)."""
    return fnmatch.fnmatchcase(name, SHARD_GLOB)


def own_temporary(name: str, own: tuple[str, ...]) -> bool:
    """Whether `name` is a half-written temporary of one of the files `own` (`.map.png.1a2b3c4d.tmp`)."""
    return any(fnmatch.fnmatchcase(name, f".{file}.????????.tmp") for file in own)


def footer_stats(metadata: dict | None) -> dict:
    """The statistics embednv keeps in a shard's Parquet footer (schema metadata); {} when it has none."""
    raw = (metadata or {}).get(STATS_KEY)
    return json.loads(raw) if raw else {}


def embeddings_files(names: list[str]) -> list[str]:
    """The names among `names` that only an embeddings directory holds (its manifest aside)."""
    return sorted(n for n in names if is_shard(n) or n in EMBEDDINGS_MARKERS)


def manifest_kind(manifest: dict) -> str:
    """EMBEDDINGS or MAP: the manifest's own `kind`, else (older manifests) told by their keys."""
    if manifest.get("kind") in (EMBEDDINGS, MAP):
        return manifest["kind"]
    return MAP if manifest.get("tool") == MAP_TOOL else EMBEDDINGS


def kind_of(names: list[str], manifest: dict | None) -> str | None:
    """EMBEDDINGS, MAP or None (empty, or only other people's files) from a listing and its manifest."""
    if manifest is not None:
        return manifest_kind(manifest)
    if embeddings_files(names):
        return EMBEDDINGS
    if set(MAP_FILES) & set(names):
        return MAP
    return None


class OutputDir:
    """An embeddings or map directory: a local path or a pyarrow-filesystem URI (s3://, gs://, file://)."""

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
        """What this directory holds now: EMBEDDINGS, MAP, or None (nothing of embednv's)."""
        return kind_of(self.names(), self.manifest())

    def is_dir(self) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path).type == fs.FileType.Directory

    def manifest(self) -> dict | None:
        return self.read_json(MANIFEST)

    def shard_names(self) -> list[str]:
        """The embedding shards, in shard order."""
        return sorted(n for n in self.names() if is_shard(n))

    def full(self, name: str) -> str:
        """`name`'s path inside `self.fs`."""
        return self._full(name)

    def finished_shards(self) -> set[int]:
        return {int(m.group(1)) for m in map(SHARD_NAME.match, self.names()) if m}

    def clear(self) -> None:
        """Remove embednv's own files only: never delete what a user put beside them."""
        for name in self.names():
            if SHARD_NAME.match(name) or name in (SUCCESS, MANIFEST, LEGACY_ERRORS) or is_temporary(name):
                self.fs.delete_file(self._full(name))
        if self.names(ERRORS_DIR):
            self.fs.delete_dir(self._full(ERRORS_DIR))
        if self.names(INDEX_DIR):  # `embednv index`'s: built from the shards just removed
            self.fs.delete_dir(self._full(INDEX_DIR))

    def remove_stale_temporaries(self) -> int:
        """Delete half-written files a killed run left behind (never visible under a final name)."""
        stale = [
            f"{folder + '/' if folder else ''}{name}"
            for folder in ("", ERRORS_DIR, ERROR_PARTS)
            for name in self.names(folder)
            if is_temporary(name)
        ]
        for name in stale:
            self.fs.delete_file(self._full(name))
        return len(stale)

    def write_table(self, name: str, table: pa.Table, metadata: dict | None = None) -> None:
        import pyarrow.parquet as pq

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

    def write_json(self, name: str, obj: dict) -> None:
        """`obj` as indented JSON (NumPy scalars, paths and tuples as their JSON values), atomically."""
        self.write_text(name, json.dumps(obj, indent=2, default=_json_value) + "\n")

    def read_json(self, name: str) -> dict | None:
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(self._full(name)) as stream:
            return json.loads(stream.read().decode())

    def shard_stats(self, name: str) -> tuple[int, dict]:
        """Rows and token statistics of a finished shard, from its footer alone."""
        import pyarrow.parquet as pq

        with self.fs.open_input_file(self._full(name)) as handle:
            meta = pq.ParquetFile(handle).metadata
            return meta.num_rows, footer_stats(meta.metadata)

    def read_table(self, name: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self._full(name), filesystem=self.fs)

    def delete(self, name: str) -> None:
        if self.exists(name):
            info = self.fs.get_file_info(self._full(name))
            (self.fs.delete_dir if info.type.name == "Directory" else self.fs.delete_file)(self._full(name))

    def _atomic(self, name: str, write) -> None:
        folder = name.rpartition("/")[0]
        self.fs.create_dir(self._full(folder) if folder else self.path, recursive=True)
        atomic_write(self.fs, self._full(name), write)


def _json_value(value):
    import numpy as np

    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
