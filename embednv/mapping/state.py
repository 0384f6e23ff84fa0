"""What a map keeps so that notes can later be placed on it without a refit (`embednv map --update`).

    _pca.npz         the PCA basis (components (50, dim), mean (dim,)), the k-means centroids
                     (k, 50) and each cluster's group (k,): no ids, nothing of any one note
    _points.parquet  one row per note on the map: <id column>, `pca` (its 50 PCA coordinates,
                     float32), and `text_hash` when the embeddings carry one

The leading `_` keeps both out of `*.parquet` globs meant for map.parquet. `_points.parquet`
costs ~200 bytes a note (200 MB at 1M notes). A map made before these files existed cannot be
updated: `--update` refuses and says to refit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from embednv import columns
from embednv.directories import PCA_STATE, POINTS_STATE
from embednv.errors import MapError
from embednv.io import atomic_path

PCA_COLUMN, HASH_COLUMN = columns.POINT_PCA, columns.POINT_TEXT_HASH
# The embeddings' per-row hash of the text the model saw (`embed --update`); shards written before it have none.
EMB_HASH = columns.TEXT_HASH


@dataclass(frozen=True)
class Basis:
    """The fitted map's frame: PCA basis, cluster centroids in its space, and the groups of the clusters."""

    components: np.ndarray  # (c, dim) float32
    mean: np.ndarray  # (dim,) float64
    centroids: np.ndarray  # (k, c) float32
    parent: np.ndarray  # (k,) int32

    def project(self, unit_vectors: np.ndarray) -> np.ndarray:
        """(b, dim) unit vectors -> (b, c) float32, as the fit's `StreamingPCA.transform` on CPU."""
        return ((unit_vectors - self.mean.astype(np.float32)) @ self.components.T).astype(np.float32)


def write_basis(out_dir: Path, basis: Basis) -> None:
    with atomic_path(out_dir / PCA_STATE) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                components=basis.components,
                mean=basis.mean,
                centroids=basis.centroids,
                parent=basis.parent,
            )


def read_basis(out_dir: Path) -> Basis:
    path = out_dir / PCA_STATE
    if not path.is_file():
        raise MapError(
            f"{out_dir} was made before maps kept their PCA basis ({PCA_STATE}): --update cannot place notes "
            "on it; refit it once with `embednv map EMB --out MAP --overwrite`"
        )
    with np.load(path, allow_pickle=False) as data:
        return Basis(data["components"], data["mean"], data["centroids"], data["parent"])


def write_points(path: Path, id_column: str, ids: pa.Array, x: np.ndarray, hashes: pa.Array | None) -> None:
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).ravel(), pa.float32())
    columns = {id_column: ids, PCA_COLUMN: pa.FixedSizeListArray.from_arrays(flat, x.shape[1])}
    if hashes is not None:
        columns[HASH_COLUMN] = hashes
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def read_points(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise MapError(f"{path.parent} has a PCA basis but no {POINTS_STATE}: refit it with --overwrite")
    return pq.read_table(path)


def pca_matrix(table: pa.Table) -> np.ndarray:
    """The `pca` column of a points table as (n, c) float32."""
    column = table.column(PCA_COLUMN).combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width).astype(np.float32)


def shard_hashes(shards, ids: pa.Array) -> pa.Array | None:
    """The embeddings' text hash of every row, in shard order (the order of `ids`); None when the
    shards carry no hash column. Reads only that column."""
    first = shards.open(shards.paths[0]).schema_arrow
    if EMB_HASH not in first.names:
        return None
    parts = [shards.open(p).read(columns=[EMB_HASH]).column(0) for p in shards.paths]
    hashes = pa.chunked_array([c for part in parts for c in part.chunks], first.field(EMB_HASH).type).combine_chunks()
    assert len(hashes) == len(ids), f"{len(hashes)} hashes for {len(ids)} ids"
    return hashes


def map_manifest(out_dir: Path, refusal: str) -> dict:
    """The manifest of the finished map in `out_dir`; MapError(`refusal`) when there is none."""
    from embednv.directories import MANIFEST, MAP, OutputDir, manifest_kind

    manifest = OutputDir(str(out_dir)).read_json(MANIFEST)
    if not manifest or manifest_kind(manifest) != MAP:
        raise MapError(refusal)
    return manifest
