"""Cohorts without code: the ids of a map cluster, or the notes nearest a note or a query.

Plain functions returning pyarrow tables; `cohort_cli.py` is the command and
`io.write_table_file` writes the result (CSV safe for spreadsheets, or Parquet). Everything streams:
map.parquet is read batch by batch, and the shards through `shards.iter_batches`
with a running top-k, so memory depends on k and the batch size, never on the number of notes.
Note text never passes through here; a query's text is embedded and dropped, never logged.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import CLUSTER, COSINE, EMBEDDING, GROUP, MAP_VALUE_COLUMNS, RANK, SCORE_COLUMNS
from embednv.directories import MANIFEST, MAP_FILE, SHARD_GLOB, OutputDir
from embednv.errors import CohortError, one_line
from embednv.io import filesystem_and_path
from embednv.shards import ShardSet, iter_batches, unit_vectors

log = logging.getLogger(__name__)

LEVEL_COLUMNS = {"fine": CLUSTER, "coarse": GROUP}  # map.parquet: a note's cluster, and its group of clusters
DEFAULT_QUERY_TASK = "similar-notes"  # NV-Embed-v2's retrieval preset: a query asks for notes like it
BATCH_ROWS = 4_096  # 64 MiB of float32 at 4,096-d; the matrix product gains nothing from more
INTEGER = re.compile(r"^[+-]?[0-9]+$")


# ----------------------------------------------------------------------------- directories


def check_directory(location: str, needs: str, option: str) -> None:
    """Fail with one line unless `location` is the kind of directory `option` reads ("map" or "embeddings")."""
    directory = OutputDir(location)
    if not directory.is_dir():
        raise CohortError(f"Directory not found: {location}")
    is_map, has_shards = MAP_FILE in directory.names(), bool(directory.shard_names())
    if needs == "map" and not is_map:
        if has_shards:
            raise CohortError(
                f"{location} is an embedding directory; {option} needs a map: embednv map {location} --out MAP_DIR"
            )
        raise CohortError(f"{location} has no {MAP_FILE}: not a map directory")
    if needs == "embeddings" and not has_shards:
        if is_map:
            source = ((directory.manifest() or {}).get("inputs") or {}).get("emb_dir")
            made_from = f" ({source})" if source else ""
            raise CohortError(
                f"{location} is a map directory; {option} needs the embedding directory it was made from{made_from}"
            )
        raise CohortError(f"{location} has no {SHARD_GLOB} shards: not an embedding directory")


# ----------------------------------------------------------------------------- clusters


def select_cluster(map_dir: str, cluster: int, level: str = "fine") -> pa.Table:
    """The ids of every note in `cluster` at `level`, in map order: one column under the id's own name."""
    import pyarrow.parquet as pq

    if level not in LEVEL_COLUMNS:
        raise CohortError(f"Invalid --level {level!r}. Valid: {', '.join(LEVEL_COLUMNS)}")
    filesystem, root = filesystem_and_path(map_dir)
    root = root.rstrip("/")
    map_file = pq.ParquetFile(filesystem.open_input_file(f"{root}/{MAP_FILE}"))
    schema = map_file.schema_arrow
    column = LEVEL_COLUMNS[level]
    if column not in schema.names:
        if level == "coarse":
            raise CohortError(
                f"{map_dir} has one level of clusters ({MAP_FILE} has no {column!r} column): use --level fine"
            )
        raise CohortError(f"{MAP_FILE} in {map_dir} has no {column!r} column; columns: {schema.names}")
    id_column = _map_id_column(OutputDir(map_dir), schema.names)
    chosen, seen = [], set()
    for batch in map_file.iter_batches(batch_size=65_536, columns=[id_column, column]):
        labels = batch.column(column)
        seen.update(v for v in pc.unique(labels).to_pylist() if v is not None)
        chosen.append(batch.column(id_column).filter(pc.equal(labels, pa.scalar(cluster))))
    if cluster not in seen:
        known = f"clusters are {min(seen)}..{max(seen)}" if seen else "it has no clusters"
        raise CohortError(f"No cluster {cluster} at level {level} in {map_dir}: {known}")
    ids = pa.chunked_array(chosen, type=schema.field(id_column).type)
    log.info("cluster %d (%s): %d notes", cluster, level, len(ids))
    return pa.table({id_column: ids})


def map_id_column(map_dir: str) -> str:
    """The id column of a map directory's map.parquet."""
    import pyarrow.parquet as pq

    filesystem, root = filesystem_and_path(map_dir)
    schema = pq.read_schema(filesystem.open_input_file(f"{root.rstrip('/')}/{MAP_FILE}"))
    return _map_id_column(OutputDir(map_dir), schema.names)


def _map_id_column(map_dir: OutputDir, names: list[str]) -> str:
    """The id column the map's manifest names; without one, the first column that is not a map value."""
    named = ((map_dir.manifest() or {}).get("inputs") or {}).get("id_column")
    if named in names:
        return named
    candidates = [n for n in names if n not in MAP_VALUE_COLUMNS]
    if not candidates:
        raise CohortError(f"{MAP_FILE} has no id column: columns are {names}")
    return candidates[0]


# ----------------------------------------------------------------------------- nearest notes


def id_type(shards: ShardSet) -> pa.DataType:
    return shards.open(shards.paths[0]).schema_arrow.field(shards.id_column).type


def parse_id(text: str, kind: pa.DataType) -> int | str:
    """A note id typed on the command line, as the id column's type (ids are compared by value and type)."""
    if pa.types.is_integer(kind):
        if not INTEGER.match(text.strip()):
            raise CohortError(f"Note id {text!r} is not an integer, but the id column holds {kind}")
        return int(text.strip())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return text
    raise CohortError(f"--near takes integer or string ids; this id column holds {kind}")


def find_vector(shards: ShardSet, note_id: int | str, location: str, batch_size: int = BATCH_ROWS) -> np.ndarray:
    """The unit vector of `note_id`: ids are scanned alone, then one batch of embeddings is decoded."""
    missing = CohortError(f"Note id {note_id!r} not found in {location}")
    try:
        value = pa.scalar(note_id, type=id_type(shards))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        raise missing from None
    for path in shards.paths:
        shard = shards.open(path)
        for group in range(shard.num_row_groups):
            offset = 0
            for batch in shard.iter_batches(batch_size=batch_size, columns=[shards.id_column], row_groups=[group]):
                index = pc.index(batch.column(0), value).as_py()
                if index >= 0:
                    return _row_vector(shards, shard, path, group, offset + index, batch_size)
                offset += batch.num_rows
    raise missing


def _row_vector(shards: ShardSet, shard, path: str, group: int, row: int, batch_size: int) -> np.ndarray:
    start = 0
    for batch in shard.iter_batches(batch_size=batch_size, columns=[EMBEDDING], row_groups=[group]):
        if row < start + batch.num_rows:
            return unit_vectors(batch.column(0).slice(row - start, 1), shards.dim, path)[0]
        start += batch.num_rows
    raise CohortError(f"{path}: row {row} of row group {group} vanished while reading")  # the file changed under us


def nearest(
    shards: ShardSet, vector: np.ndarray, k: int, exclude: int | str | None = None, batch_size: int = BATCH_ROWS
) -> pa.Table:
    """The `k` notes with the highest cosine to `vector`: <id>, cosine (float32), rank (1 = nearest).

    One pass over the shards keeping a running top-k (argpartition per batch), so only one
    batch of vectors is in memory. Rows whose id equals `exclude` are skipped. Equal cosines
    rank in shard order, so a tie at the k-th place does not depend on the batch size.
    """
    query = unit_query(shards, vector, k)
    skip = None if exclude is None else pa.scalar(exclude, type=id_type(shards))
    best_scores, best_rows = np.empty(0, np.float32), np.empty(0, np.int64)
    best_ids = pa.array([], type=id_type(shards))
    start = 0
    for ids, vectors in iter_batches(shards, batch_size, with_ids=True):
        rows = np.arange(start, start + len(ids))
        start += len(ids)
        keep = np.arange(len(ids))
        if skip is not None:
            keep = np.flatnonzero(~pc.fill_null(pc.equal(ids, skip), False).to_numpy(zero_copy_only=False))
        scores = vectors[keep] @ query
        scores[np.isnan(scores)] = -np.inf  # a broken row ranks last instead of poisoning the order
        top = _top_k(scores, rows[keep], k)
        scores = np.concatenate([best_scores, scores[top]])
        rows = np.concatenate([best_rows, rows[keep][top]])
        candidates = pa.concat_arrays([best_ids, ids.take(pa.array(keep[top]))])
        merged = _top_k(scores, rows, k)
        best_scores, best_rows, best_ids = scores[merged], rows[merged], candidates.take(pa.array(merged))
    order = np.lexsort((best_rows, -best_scores))
    if len(order) < k:
        log.info("only %d notes to rank (asked for %d)", len(order), k)
    return pa.table(
        {
            shards.id_column: best_ids.take(pa.array(order)),
            COSINE: pa.array(best_scores[order], pa.float32()),
            RANK: pa.array(np.arange(1, len(order) + 1), pa.int32()),
        }
    )


def unit_query(shards: ShardSet, vector: np.ndarray, k: int) -> np.ndarray:
    """`vector` checked against the shards and scaled to unit length (a new array); `k` checked too.

    Shared by the exact scan and the index (`embednv.index.search`), so both refuse the same inputs.
    """
    if k < 1:
        raise CohortError(f"--k must be at least 1, got {k}")
    if shards.id_column in SCORE_COLUMNS:
        raise CohortError(f"The id column is named {shards.id_column!r}, which the output needs for itself")
    query = np.asarray(vector, np.float32).ravel()
    if query.size != shards.dim:
        raise CohortError(f"The query vector has {query.size} dimensions, the embeddings {shards.dim}")
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0:
        raise CohortError("The query vector is zero or not finite")
    return query / norm  # a new array: the caller's vector stays as it was


def _top_k(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores (unordered); ties at the k-th place go to the earliest rows."""
    if len(scores) <= k:
        return np.arange(len(scores))
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)
    tied = tied[np.argsort(rows[tied], kind="stable")][: k - len(above)]
    return np.concatenate([above, tied])


# ----------------------------------------------------------------------------- queries


def query_vector(emb_dir: str, text: str, task: str | None = None, device: str = "auto", embedder=None) -> np.ndarray:
    """Embed `text` with the model that embedded `emb_dir` (its manifest says which), as a query.

    NV-Embed-v2 queries take an instruction (default: the `similar-notes` retrieval preset);
    other models take none. The text is never logged. `embedder`: an `embednv.Embedder` already
    loaded with that model (any instruction), used instead of loading it a second time.
    """
    manifest = OutputDir(emb_dir).manifest()
    if manifest is None:
        raise CohortError(f"{emb_dir} has no {MANIFEST}: --query needs it to know which model embedded the notes")
    model = manifest.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    if not name or name == "auto":
        raise CohortError(f"{MANIFEST} in {emb_dir} names no model")
    ref = _resolve_here(name, emb_dir, manifest.get("max_tokens"))
    recorded = model.get("revision") if isinstance(model, dict) else None
    if recorded and ref.revision and recorded != ref.revision:
        raise CohortError(
            f"{emb_dir} was embedded with {name} revision {recorded}, the copy here is {ref.revision}: its vectors are not comparable"
        )
    if ref.kind == "nvembed":
        task = task or DEFAULT_QUERY_TASK
        log.info("query instruction: %s", f"task preset {task!r}" if " " not in task else "a free-text task")
    elif task:
        raise CohortError(f"--task is for NV-Embed-v2 queries; {name} takes no instruction")
    if embedder is not None:
        if (embedder.ref.path, embedder.ref.revision) != (ref.path, ref.revision):
            raise CohortError(f"The embedder given holds {embedder.ref.name}, but {emb_dir} was embedded with {name}")
        return embedder.encode([text], task=task, instruction=None if task else "")[0]
    from embednv.api import Embedder

    try:
        embedder = Embedder(model=name, device=device, task=task, max_tokens=manifest.get("max_tokens"))
    except Exception as error:  # any failure to load is one line for the user
        raise CohortError(f"Cannot load {name}, the model that embedded {emb_dir}, here: {one_line(error)}") from error
    return embedder.encode([text])[0]


def _resolve_here(name: str, emb_dir: str, max_tokens: int | None):
    from embednv.models.registry import resolve_model

    try:
        return resolve_model(name, has_gpu=False, max_tokens=max_tokens)
    except Exception as error:  # missing checkpoint, not in the cache, bad config
        raise CohortError(f"Cannot load {name}, the model that embedded {emb_dir}, here: {one_line(error)}") from error
