"""`embednv forget EMB --ids FILE`: remove notes (a withdrawn patient's) from everything made of them.

Every file that holds a forgotten id or its vector is replaced by one without it, one atomic
replacement per file (`embed/shard_edit.py`), so plain readers never see a half-edited file
and a SIGKILL loses nothing: the same command run again finds what is left and finishes. What
is edited: the shards, `_errors/errors.parquet`, the cohort index `_index/` (removed whole, index.json
first, when it lists a forgotten id: `embednv index EMB` rebuilds it), and every map made from
EMB (its manifest's `maps`, plus `--map`), through the map side's `mapping/forget.py`. Only
counts are reported: ids are PHI-adjacent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import DEFAULT_ID_COLUMN
from embednv.directories import EMBEDDINGS, ERRORS, INDEX_DIR, LEGACY_ERRORS, MANIFEST, OutputDir
from embednv.embed.shard_edit import edit_shard, remove_rows
from embednv.errors import ConfigError, InputError, OutputConflict
from embednv.index.store import RECORD, IndexDir
from embednv.io import filesystem_and_path

log = logging.getLogger(__name__)


@dataclass
class ForgetReport:
    given: int  # distinct ids in the file
    in_shards: int = 0  # rows removed from the shards
    shards_edited: int = 0
    in_errors: int = 0  # rows removed from the errors file
    index_removed: bool = False
    maps: dict[str, int] = field(default_factory=dict)  # map directory -> rows removed

    def line(self, emb_dir: str) -> str:
        parts = [
            f"{self.in_shards:,} rows from {self.shards_edited} shards",
            f"{self.in_errors:,} from {ERRORS}",
        ]
        parts += ["the cohort index (rebuild it: `embednv index`)"] if self.index_removed else []
        parts += [f"{n:,} from the map {uri}" for uri, n in self.maps.items()]
        return f"forgot {self.given:,} ids in {emb_dir}: removed " + ", ".join(parts)


def read_id_list(path: str, id_column: str) -> list[str]:
    """Ids as text, from Parquet or CSV (the column `id_column`, else the first) or a plain list, one per line."""
    filesystem, full = filesystem_and_path(path)
    try:
        if path.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            table = pq.read_table(full, filesystem=filesystem)
            column = table.column(id_column if id_column in table.column_names else 0)
            return [str(v) for v in column.to_pylist() if v is not None]
        with filesystem.open_input_stream(full) as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError, pa.ArrowException) as error:
        raise InputError(f"{path}: cannot read the id list ({type(error).__name__})") from None
    if path.lower().endswith(".csv"):
        import csv

        rows = list(csv.reader(lines))
        if not rows:
            return []
        at = rows[0].index(id_column) if id_column in rows[0] else 0
        return [r[at] for r in rows[1:] if len(r) > at and r[at] != ""]
    return [line for line in lines if line.strip()]


def as_id_array(ids: list[str], id_type: pa.DataType) -> pa.Array:
    """The given ids in the directory's id type; text that is no such id (`x12` for integer ids) matches nothing."""
    if pa.types.is_integer(id_type):
        numbers = []
        for text in ids:
            try:
                numbers.append(int(text.strip()))
            except ValueError:
                continue
        return pa.array(sorted(set(numbers)), id_type)
    return pa.array(sorted(set(ids)), pa.string()).cast(id_type)


def forget(emb_dir: str, ids_file: str, maps: tuple[str, ...] = ()) -> ForgetReport:
    """Remove the ids listed in `ids_file` from `emb_dir` and what was made of it; see the module docstring."""
    out = OutputDir(emb_dir)
    manifest = out.manifest()
    if manifest is None or out.kind() != EMBEDDINGS:
        raise OutputConflict(f"{emb_dir} is not an embeddings directory (no {MANIFEST} of embednv embed)")
    id_column = manifest.get("id_column", DEFAULT_ID_COLUMN)
    targets = list(dict.fromkeys([*manifest.get("maps", []), *maps]))
    forget_from_map = _map_forgetter() if targets else None  # refuse before any file is touched

    import pyarrow.parquet as pq

    names = out.shard_names()
    id_type = pq.read_schema(out.full(names[0]), filesystem=out.fs).field(id_column).type if names else pa.string()
    ids = as_id_array(read_id_list(ids_file, id_column), id_type)
    report = ForgetReport(given=len(ids))
    out.remove_stale_temporaries()
    for name in names:
        with out.fs.open_input_file(out.full(name)) as handle:
            held = pq.read_table(handle, columns=[id_column]).column(0)
        hits = int(pc.sum(pc.is_in(held, value_set=ids)).as_py() or 0)
        if hits:
            edit_shard(out, name, id_column, remove=ids)
            report.in_shards += hits
            report.shards_edited += 1
    for errors in (ERRORS, LEGACY_ERRORS):  # a directory written before the errors moved into `_errors/`
        if out.exists(errors):
            report.in_errors += remove_rows(out, errors, id_column, ids)
    report.index_removed = _remove_index_holding(emb_dir, ids)
    texts = {str(v) for v in ids.to_pylist()}
    for uri in targets:
        if not OutputDir(uri).is_dir():
            log.info("a map listed in %s is gone; skipped", MANIFEST)
            continue
        report.maps[uri] = forget_from_map(uri, texts)

    manifest = out.manifest() or manifest
    if IndexDir(emb_dir).record() is None:
        manifest.pop("index", None)
    manifest.setdefault("forgets", []).append(
        {"ids_given": report.given, "rows_removed": report.in_shards, "errors_removed": report.in_errors}
    )
    manifest["rows_embedded"] = sum(out.shard_stats(n)[0] for n in out.shard_names())
    out.write_text(MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
    return report


def _remove_index_holding(emb_dir: str, ids: pa.Array) -> bool:
    """Remove `_index/` when its id list holds any of `ids`: index.json first (then it is absent), then its files."""
    index = IndexDir(emb_dir)
    record = index.record()
    if record is not None:
        held = index.load_ids(record["files"]["ids"])
        if not pc.any(pc.is_in(held, value_set=ids.cast(held.type))).as_py():
            return False
        index.fs.delete_file(index.file(RECORD))
    elif not index.names():
        return False
    # Without index.json whatever is left in _index/ (a removal or a build cut short) is unusable: it goes.
    for name in index.names():
        index.fs.delete_file(index.file(name))
    log.info("removed the cohort index in %s/ (it held forgotten notes); rebuild it with `embednv index`", INDEX_DIR)
    return True


def _map_forgetter():
    try:
        from embednv.mapping.forget import forget_from_map
    except ImportError:
        raise ConfigError("this embednv cannot remove notes from maps yet (no embednv.mapping.forget)") from None
    return forget_from_map
