"""Where an index lives beside the shards, what it records, and how a stale one is recognised.

    EMB/_index/index.json            the record (also under "index" in EMB/_manifest.json)
    EMB/_index/<build>.faiss         the FAISS index, positions 0..n-1 in shard order
    EMB/_index/<build>.ids.arrow     the id column in the same order (Arrow IPC, memory-mapped)

The leading underscore keeps Parquet readers of EMB (pandas, pyarrow.dataset, DuckDB, polars)
on the shards, and the ids file is not `.parquet`, so even a recursive `**/*.parquet` glob
misses it. A build writes new files under a fresh build name and replaces index.json last, so
a reader sees the old index or the new one, never a mix; the old build's files are removed after.

Stale: the record lists every shard it was built from (name, bytes, rows, and a hash of the
Parquet footer, which changes with the content); `check_fresh` compares that list with the
shards now present, so an extended, resumed, updated or `forget`-edited directory is refused
instead of answered from vectors that are no longer there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

from embednv.directories import INDEX_DIR, INDEX_RECORD, MANIFEST, OutputDir
from embednv.errors import StaleIndex
from embednv.io import atomic_write, filesystem_and_path

log = logging.getLogger(__name__)

RECORD = INDEX_RECORD.rpartition("/")[2]
FORMAT = 1  # bumped when the layout changes; an index in another format is refused as stale


class IndexDir:
    """The `_index/` folder of one embedding directory (a local path or a pyarrow URI)."""

    def __init__(self, emb_dir: str):
        self.emb_dir = emb_dir
        self.embeddings = OutputDir(emb_dir)  # the directory the index sits in: its manifest and JSON reads
        self.fs, root = filesystem_and_path(emb_dir)
        self.root = root.rstrip("/")
        self.path = f"{self.root}/{INDEX_DIR}"
        self.local = type(self.fs).__name__ == "LocalFileSystem"

    def file(self, name: str) -> str:
        return f"{self.path}/{name}"

    def record(self) -> dict | None:
        """The record of the current build, or None when there is no index."""
        return self.embeddings.read_json(INDEX_RECORD)

    def new_build(self, kind: str) -> dict:
        """File names for a new build, unique so that it never overwrites the index being read."""
        build = f"{kind}-{uuid.uuid4().hex[:8]}"
        return {"build": build, "index": f"{build}.faiss", "ids": f"{build}.ids.arrow"}

    def write_bytes(self, name: str, data: bytes) -> None:
        self.fs.create_dir(self.path, recursive=True)

        def write(tmp: str) -> None:
            with self.fs.open_output_stream(tmp) as stream:
                stream.write(data)

        atomic_write(self.fs, self.file(name), write)

    def write_with(self, name: str, write) -> None:
        """`write(path)` into a temporary name in `_index/`, then renamed to `name`."""
        self.fs.create_dir(self.path, recursive=True)
        atomic_write(self.fs, self.file(name), write)

    def save_index(self, name: str, index) -> None:
        import faiss

        if self.local:
            self.write_with(name, lambda tmp: faiss.write_index(index, tmp))
        else:  # object stores: FAISS writes local files only, so its bytes go up in one PUT
            self.write_bytes(name, faiss.serialize_index(index).tobytes())

    def load_index(self, name: str, kind: str):
        """The FAISS index; a local one memory-mapped, so a query reads only the lists (or rows) it scans."""
        import faiss

        if self.local:
            flags = faiss.IO_FLAG_MMAP_IFC if kind == "flat" else faiss.IO_FLAG_MMAP
            return faiss.read_index(self.file(name), flags)
        import numpy as np

        with self.fs.open_input_stream(self.file(name)) as stream:
            return faiss.deserialize_index(np.frombuffer(stream.read(), np.uint8))

    def save_ids(self, name: str, id_column: str, chunks: list) -> None:
        """The ids in index order, as an uncompressed Arrow IPC file (memory-mappable; not a Parquet name)."""
        import pyarrow as pa

        ids = pa.chunked_array(chunks)
        schema = pa.schema([pa.field(id_column, ids.type)])

        def write(tmp: str) -> None:
            with self.fs.open_output_stream(tmp) as sink, pa.ipc.new_file(sink, schema) as writer:
                for chunk in ids.chunks:
                    writer.write_batch(pa.record_batch([chunk], schema=schema))

        self.write_with(name, write)

    def load_ids(self, name: str):
        """The id column in index order: mapped, not read, from a local disk."""
        import pyarrow as pa

        source = pa.memory_map(self.file(name)) if self.local else self.fs.open_input_file(self.file(name))
        return pa.ipc.open_file(source).read_all().column(0)

    def commit(self, record: dict) -> None:
        """Make `record` the current build: index.json, then the manifest; then drop older builds' files."""
        self.write_bytes(RECORD, (json.dumps(record, indent=2) + "\n").encode())
        manifest = self.embeddings.read_json(MANIFEST)
        if manifest is None:  # a manifest holding only "index" would read as a map directory's
            log.info("%s has no %s: the index is recorded in %s/%s only", self.emb_dir, MANIFEST, INDEX_DIR, RECORD)
        else:
            manifest["index"] = manifest_entry(record)
            self.embeddings.write_json(MANIFEST, manifest)
        keep = {RECORD, record["files"]["index"], record["files"]["ids"]}
        for name in self.names():
            if name not in keep and not name.startswith("."):  # .tmp files may be another build's, in flight
                self.fs.delete_file(self.file(name))

    def names(self) -> list[str]:
        from pyarrow import fs

        if self.fs.get_file_info(self.path).type != fs.FileType.Directory:
            return []
        return sorted(i.base_name for i in self.fs.get_file_info(fs.FileSelector(self.path)))


def manifest_entry(record: dict) -> dict:
    """The record as `_manifest.json` keeps it: the shard list shortened to its count, bytes and hash."""
    entry = {k: v for k, v in record.items() if k != "shards"}
    shards = record["shards"]
    entry["built_from"] = {
        "shards": len(shards),
        "bytes": sum(s["bytes"] for s in shards),
        "rows": sum(s["rows"] for s in shards),
        "sha256": record["shards_sha256"],
    }
    return entry


def shard_signatures(shards) -> list[dict]:
    """Name, bytes, rows and footer hash of each shard of a `ShardSet`, in its (index) order.

    The footer holds every column chunk's size and statistics, so a shard rewritten with other
    rows changes its hash even at the same byte size; a copied directory keeps it (mtimes do not).
    """
    import pyarrow.parquet as pq

    out = []
    for path in shards.paths:
        with shards.filesystem.open_input_file(path) as handle:
            size = handle.size()
            handle.seek(size - 8)
            footer_len = int.from_bytes(handle.read(4), "little")
            handle.seek(size - 8 - footer_len)
            footer = hashlib.sha256(handle.read(footer_len)).hexdigest()[:16]
            rows = pq.ParquetFile(handle).metadata.num_rows
        out.append({"name": path.rsplit("/", 1)[-1], "bytes": size, "rows": rows, "footer_sha256": footer})
    return out


def signatures_hash(signatures: list[dict]) -> str:
    return hashlib.sha256(json.dumps(signatures, sort_keys=True).encode()).hexdigest()[:16]


def check_fresh(record: dict, signatures: list[dict], emb_dir: str) -> None:
    """Raise StaleIndex (one line, naming the fix) unless the index was built from exactly these shards."""
    fix = f"run `embednv index {emb_dir}` to rebuild it, or add --exact to scan every vector"
    if record.get("format") != FORMAT:
        raise StaleIndex(
            f"{emb_dir}: the index in {INDEX_DIR}/ has format {record.get('format')!r}, not {FORMAT}; {fix}"
        )
    if record.get("shards_sha256") == signatures_hash(signatures):
        return
    then = {s["name"]: s for s in record.get("shards", [])}
    now = {s["name"]: s for s in signatures}
    added = sorted(set(now) - set(then))
    removed = sorted(set(then) - set(now))
    changed = sorted(n for n in set(now) & set(then) if now[n] != then[n])
    what = "; ".join(
        f"{len(names)} shard{'s' if len(names) > 1 else ''} {verb} ({_names(names)})"
        for verb, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    )
    raise StaleIndex(
        f"{emb_dir}: the index in {INDEX_DIR}/ is stale, {what or 'shards differ'} since it was built; {fix}"
    )


def _names(names: list[str], most: int = 3) -> str:
    """Shard names for a one-line message: ascii() escapes any newline or control character in them."""
    shown = [n if n.isprintable() and n.isascii() else ascii(n) for n in names[:most]]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")
