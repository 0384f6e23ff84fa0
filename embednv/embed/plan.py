"""Find the input files, check them before any model work, and plan the output shards.

Planning reads only what it must (Parquet footers and id columns; CSV and JSONL are parsed
for their ids) so that a bad file fails in seconds, not after an hour on the GPUs. It also
finds duplicate ids (the first occurrence in file order is kept) and cuts every file into
fixed row ranges: each range becomes exactly one output shard, which makes shard names and
contents deterministic and lets an interrupted run resume shard by shard.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os

import pyarrow as pa

from embednv.embed.fields import IdType
from embednv.embed.inputs import InputFile, InputPlan, Shard
from embednv.embed.read import read_ids
from embednv.errors import InputError, OutputConflict
from embednv.io import filesystem_and_path, format_of

log = logging.getLogger(__name__)


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """Files, directories (recursively) and globs to a sorted, de-duplicated list of input files."""
    from pyarrow import fs as pafs

    found: dict[str, InputFile] = {}
    for given in inputs:
        filesystem, path = filesystem_and_path(given)
        scheme = given.split("://", 1)[0] + "://" if "://" in given else ""
        if any(ch in path for ch in "*?["):
            infos = _glob(filesystem, path)
            if not infos:
                raise InputError(f"{given}: the pattern matches no file")
        else:
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{given}: no such file or directory")
            if info.type == pafs.FileType.Directory:
                infos = [
                    i
                    for i in filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
                    if i.type == pafs.FileType.File and format_of(i.path) and not _hidden(i.path, path)
                ]
                if not infos:
                    raise InputError(f"{given}: the directory holds no .parquet, .csv or .jsonl file")
            else:
                infos = [info]
        for info in sorted(infos, key=lambda i: i.path):
            fmt = format_of(info.path)
            if fmt is None:
                suffix = os.path.splitext(info.path)[1] or "(none)"
                raise InputError(f"{given}: unsupported file type {suffix}; use .parquet, .csv or .jsonl")
            uri = scheme + info.path  # s3://bucket/key, file:///abs/path, or a plain local path
            found[uri] = InputFile(uri, fmt, info.size or 0, info.mtime_ns or 0)
    return list(found.values())


def plan_inputs(
    inputs: list[str],
    id_column: str,
    text_column: str,
    rows_per_shard: int,
    skip_bad_files: bool = False,
    id_type: IdType = "string",
) -> InputPlan:
    """Check every input file and cut the corpus into shards; raises InputError on the first bad file."""
    files, id_arrays, skipped = [], [], []
    for candidate in expand_inputs(inputs):
        try:
            ids = read_ids(candidate, id_column, text_column, id_type)
        except InputError as error:
            if not skip_bad_files:
                raise
            log.warning("skipping %s", error)
            skipped.append((candidate.uri, str(error)))
            continue
        files.append(
            InputFile(candidate.uri, candidate.format, candidate.size, candidate.mtime_ns, len(ids), str(ids.type))
        )
        id_arrays.append(ids)
    if not files:
        raise InputError("no readable input file" + (f" ({len(skipped)} skipped as bad)" if skipped else ""))
    id_type = _common_id_type(files, id_arrays, id_column)
    if sum(f.n_rows for f in files) == 0:
        raise InputError(f"{files[0].uri if len(files) == 1 else 'the inputs'}: no rows to embed (empty input)")
    shards, index = [], 0
    for file_index, file in enumerate(files):
        for start in range(0, file.n_rows, rows_per_shard):
            shards.append(Shard(index, file_index, start, min(start + rows_per_shard, file.n_rows)))
            index += 1
    return InputPlan(tuple(files), tuple(shards), id_type, _duplicate_rows(id_arrays), tuple(skipped))


def check_output_apart(out: str, inputs: list[str]) -> None:
    """Refuse an --out that an input would read (inside an input directory, or matched by an input
    glob) or that holds an input: a rerun would otherwise take its own shards as notes."""
    out_kind, out_path = _location(out)
    shard = f"{out_path}/part-00000.parquet"
    for given in inputs:
        kind, path = _location(given)
        if kind != out_kind:
            continue
        magic = any(ch in path for ch in "*?[")
        root = _glob_root(path) if magic else path
        if (magic and _glob_may_match(path, shard)) or (not magic and _inside(shard, path)):
            raise OutputConflict(
                f"--out {out} lies inside the input {given}: a rerun would read its own shards as notes"
            )
        if _inside(root, out_path):
            raise OutputConflict(f"--out {out} holds the input {given}; give the output a directory of its own")


def _location(location: str) -> tuple[str, str]:
    """(filesystem kind, absolute path without a trailing slash): local paths and file:// URIs compare equal."""
    filesystem, path = filesystem_and_path(location)
    return type(filesystem).__name__, path.rstrip("/") or "/"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _glob_root(pattern: str) -> str:
    return pattern[: min(pattern.index(ch) for ch in "*?[" if ch in pattern)].rsplit("/", 1)[0] or "/"


def _glob_may_match(pattern: str, path: str) -> bool:
    """Glob semantics, component by component; `**` may match any depth below its prefix."""
    if "**" in pattern:
        return _inside(path, _glob_root(pattern))
    parts, candidate = pattern.split("/"), path.split("/")
    return len(parts) == len(candidate) and all(fnmatch.fnmatchcase(c, p) for c, p in zip(candidate, parts))


def _common_id_type(files: list[InputFile], id_arrays: list[pa.Array], id_column: str) -> pa.DataType:
    """All files must agree on the id type, or the output column could not keep it."""
    types = {str(a.type): (f.uri, a.type) for f, a in zip(files, id_arrays) if a.type != pa.null()}
    if len(types) > 1:
        described = "; ".join(f"{uri}: {t}" for uri, t in types.values())
        raise InputError(f"the id column {id_column!r} has different types across files ({described})")
    return next(iter(types.values()))[1] if types else pa.null()


def _duplicate_rows(id_arrays: list[pa.Array]) -> dict[int, frozenset[int]]:
    """For each file, the rows whose id already appeared earlier (in file order, then row order)."""
    import numpy as np
    import pandas as pd

    if not id_arrays:
        return {}
    lengths = [len(a) for a in id_arrays]
    ids = pd.Series(
        pa.chunked_array(
            id_arrays, type=id_arrays[0].type if len({a.type for a in id_arrays}) == 1 else None
        ).to_pandas()
    )
    repeated = ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy()
    positions = np.flatnonzero(repeated)
    bounds = np.cumsum([0] + lengths)
    result: dict[int, set[int]] = {}
    for position in positions:
        file_index = int(np.searchsorted(bounds, position, side="right") - 1)
        result.setdefault(file_index, set()).add(int(position - bounds[file_index]))
    return {k: frozenset(v) for k, v in result.items()}


def _hidden(path: str, root: str) -> bool:
    """Skip `_SUCCESS`, `.crc` files and the like, as Spark, Ray and pyarrow do."""
    return any(part.startswith((".", "_")) for part in os.path.relpath(path, root).split(os.sep))


def _glob(filesystem, pattern: str):
    from pyarrow import fs as pafs

    if isinstance(filesystem, pafs.LocalFileSystem):
        return [filesystem.get_file_info(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    root = _glob_root(pattern)
    listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return [i for i in listing if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, pattern)]
