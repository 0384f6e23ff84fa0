"""Answer `cohort --near/--query` from the index beside the shards, or by the exact scan.

`open_search` decides once, before a query model is loaded, so a stale index is refused in a
fraction of a second rather than after the model: with a current index the answer comes from it,
with none from the exact scan (`cohort.nearest`), and with a stale one not at all (`StaleIndex`,
one line naming `embednv index EMB` and `--exact`). Both searchers return the same table:
<id>, cosine (float32), rank (1 = nearest), ties in shard order.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embednv.columns import COSINE, RANK
from embednv.errors import StaleIndex
from embednv.index.params import FLAT_MAX_FLOATS, probes_for_k
from embednv.index.store import INDEX_DIR, IndexDir, check_fresh, shard_signatures

log = logging.getLogger(__name__)


class ExactSearch:
    """Every vector scanned (`cohort.nearest`): for `--exact`, and for directories without an index."""

    how = "exact scan"

    def __init__(self, shards):
        self.shards = shards

    def nearest(self, vector: np.ndarray, k: int, exclude: int | str | None = None) -> pa.Table:
        from embednv.cohort import nearest

        return nearest(self.shards, vector, k, exclude=exclude)


class IndexSearch:
    """The FAISS index of `_index/`, memory-mapped, with its ids in index order."""

    def __init__(self, index_dir: IndexDir, record: dict, shards):
        from embednv.runtime import import_faiss

        self.faiss = import_faiss()
        self.record, self.shards = record, shards
        self.index = index_dir.load_index(record["files"]["index"], record["kind"])
        self.ids = index_dir.load_ids(record["files"]["ids"])
        if len(self.ids) != self.index.ntotal or self.index.d != shards.dim:
            raise StaleIndex(
                f"{index_dir.emb_dir}: the index in {INDEX_DIR}/ holds {self.index.ntotal:,} vectors of {self.index.d}-d "
                f"and {len(self.ids):,} ids; run `embednv index {index_dir.emb_dir} --overwrite`, or add --exact"
            )
        params = record["params"]
        self.how = f"{record['kind']} index" + (
            f" ({params['nlist']:,} lists, nprobe {params['nprobe']} at k={params['k']})" if params.get("nlist") else ""
        )

    def nearest(self, vector: np.ndarray, k: int, exclude: int | str | None = None) -> pa.Table:
        """The k nearest by the index: k + 1 asked for, so that the excluded note (--near's own) can be dropped."""
        from embednv.cohort import unit_query

        query = unit_query(self.shards, vector, k)[None, :]  # (1, dim)
        params = self.record["params"]
        if params.get("nlist"):
            nprobe = probes_for_k(params["nprobe"], params["nlist"], k, params["k"])
            self.faiss.extract_index_ivf(self.index).nprobe = nprobe
            log.debug("probing %d of %d lists", nprobe, params["nlist"])
        wanted = min(k + (exclude is not None), self.index.ntotal)
        scores, positions = self.index.search(query, wanted)
        found = positions[0] >= 0  # -1: fewer vectors in the lists probed than asked for
        scores, positions = scores[0][found], positions[0][found]
        order = np.lexsort((positions, -scores))  # ties in shard order, as the exact scan
        scores, positions = scores[order], positions[order]
        ids = self.ids.take(pa.array(positions)).combine_chunks()
        if exclude is not None:
            keep = pc.invert(pc.fill_null(pc.equal(ids, pa.scalar(exclude, type=ids.type)), False))
            ids, scores = ids.filter(keep), scores[keep.to_numpy(zero_copy_only=False)]
        ids, scores = ids[:k], scores[:k]
        if len(scores) < k:
            log.info("only %d notes found (asked for %d)", len(scores), k)
        return pa.table(
            {
                self.shards.id_column: ids,
                COSINE: pa.array(scores, pa.float32()),
                RANK: pa.array(np.arange(1, len(scores) + 1), pa.int32()),
            }
        )


def open_search(emb_dir: str, shards, exact: bool = False) -> ExactSearch | IndexSearch:
    """The searcher for `emb_dir`: exact when asked or when there is no index; StaleIndex for a stale one."""
    if exact:
        log.info("--exact: scanning every vector")
        return ExactSearch(shards)
    index_dir = IndexDir(emb_dir)
    record = index_dir.record()
    if record is None:
        if shards.n_rows * shards.dim > FLAT_MAX_FLOATS:  # where an index starts to pay
            log.info("no index: scanning every vector (`embednv index %s` makes queries faster)", emb_dir)
        return ExactSearch(shards)
    check_fresh(record, shard_signatures(shards), emb_dir)
    if record.get("id_column") != shards.id_column:
        raise StaleIndex(
            f"{emb_dir}: the index in {INDEX_DIR}/ maps to id column {record.get('id_column')!r}, the shards' is "
            f"{shards.id_column!r}; run `embednv index {emb_dir}` to rebuild it, or add --exact to scan every vector"
        )
    search = IndexSearch(index_dir, record, shards)
    log.info("answering from the %s (built %s)", search.how, record.get("built_at"))
    return search
