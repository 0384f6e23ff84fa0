"""Build the nearest-neighbour index of an embedding directory, streaming: sample, train, add, calibrate.

Two passes over the shards, one batch of vectors decoded at a time:
1. sample: the k-means training rows, drawn uniformly by position over all n (shards come in
   input order, often by date or service, so the first rows would bias the lists); 200 of them
   are also the calibration queries;
2. add: each batch goes into the index, its ids onto the id list, and its cosines to the
   calibration queries into their exact running top-(k+1) (the query itself is left out, as
   `cohort --near` leaves it out).
Then nprobe is calibrated: the smallest power of two whose recall@k against that exact answer
reaches `target_recall` (`params.IndexParams`). A flat index is exact and skips both the
sample and the calibration.

Peak memory: the index being built (n x 4·dim bytes for flat and ivf, n x dim for ivf-sq8,
plus 8 bytes an id in the lists), the ids, the training sample (nlist x 64 x dim x 4 bytes:
100 MB at 1M x 384) and one batch (BATCH_ROWS x dim x 4). With FAISS's GPU build, k-means
trains on the GPUs; everything else runs on CPU.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np

from embednv.errors import IndexingError
from embednv.index.params import IndexParams
from embednv.index.store import FORMAT, IndexDir, check_fresh, shard_signatures, signatures_hash
from embednv.runtime import import_faiss

log = logging.getLogger(__name__)

BATCH_ROWS = 16_384  # 24 MiB at 384-d, 256 MiB at 4,096-d; FAISS's add gains nothing from more
PLATEAU = 0.002  # recall gained by doubling nprobe below which calibration stops (2 of 10,000 neighbours)


def build_index(emb_dir: str, params: IndexParams | None = None, overwrite: bool = False) -> tuple[dict, bool]:
    """Build the index of `emb_dir` unless a current one with these settings exists.

    Returns (record, built). A stale index is rebuilt without asking (it is derived data), with
    the settings it was built with unless others are given; a current one is replaced only with
    `overwrite`, and kept when the settings match.
    """
    from embednv.shards import open_shards

    faiss = import_faiss()
    params = params or IndexParams()
    shards = open_shards(emb_dir)
    index_dir = IndexDir(emb_dir)
    signatures = shard_signatures(shards)
    current = index_dir.record()
    if current is not None and not overwrite and _is_current(current, signatures, emb_dir):
        if params.kind in ("auto", current["kind"]) and params.nlist in (None, current["params"].get("nlist")):
            return current, False
        raise IndexingError(f"{emb_dir} already has a current {current['kind']} index; add --overwrite to replace it")
    if current is not None and params == IndexParams() and current.get("requested"):
        params = IndexParams(**current["requested"])  # a rebuild keeps the settings the stale one was asked for
    p = params.resolve(shards.n_rows, shards.dim)
    started = time.perf_counter()
    log.info("indexing %s vectors (%d-d) as %s", f"{shards.n_rows:,}", shards.dim, p.factory)
    index = faiss.index_factory(shards.dim, p.factory, faiss.METRIC_INNER_PRODUCT)
    clock = _Phases()
    queries = positions = None
    on_gpu = False
    if p.kind != "flat":
        with clock("train"):  # the sample pass and k-means
            on_gpu, queries, positions = _train(faiss, index, shards, p)
    with clock("add"):  # the second pass: every vector into the lists, and the calibration's exact answers
        ids, truth = _add(index, shards, queries, positions, p.k)
    with clock("calibrate"):
        nprobe, curve = _calibrate(faiss, index, queries, positions, truth, p) if p.kind != "flat" else (None, {})
    files = index_dir.new_build(p.kind)
    with clock("write"):
        index_dir.save_index(files["index"], index)
        index_dir.save_ids(files["ids"], shards.id_column, ids)
    record = {
        "format": FORMAT,
        "library": "faiss",
        "version": faiss.__version__,
        "kind": p.kind,
        "factory": p.factory,
        "metric": "inner product (cosine: the vectors are unit length)",
        "n": shards.n_rows,
        "dim": shards.dim,
        "id_column": shards.id_column,
        "requested": asdict(params),
        "params": {
            "nlist": p.nlist,
            "nprobe": nprobe,
            "k": p.k,
            "target_recall": p.target_recall,
            "train_rows": p.train_rows(shards.n_rows) if p.kind != "flat" else 0,
            "calibration_queries": 0 if queries is None else len(queries),
            "seed": p.seed,
        },
        "calibration": {
            "recall_at_k": curve.get(nprobe, 1.0),
            "recall_by_nprobe": {str(probes): r for probes, r in curve.items()},
        },
        "trained_on": "gpu" if on_gpu else "cpu",
        "files": {"index": files["index"], "ids": files["ids"]},
        "bytes": {name: index_dir.fs.get_file_info(index_dir.file(files[name])).size for name in ("index", "ids")},
        "build_seconds": round(time.perf_counter() - started, 2),
        "phase_seconds": clock.seconds,
        "built_at": _now(),
        "shards": signatures,
        "shards_sha256": signatures_hash(signatures),
    }
    index_dir.commit(record)
    return record, True


def _is_current(record: dict, signatures: list[dict], emb_dir: str) -> bool:
    from embednv.errors import StaleIndex

    try:
        check_fresh(record, signatures, emb_dir)
    except StaleIndex as stale:
        log.info("%s", str(stale).split(";")[0] + ": rebuilding it")
        return False
    return True


def _train(faiss, index, shards, p: IndexParams) -> tuple[bool, np.ndarray, np.ndarray]:
    """k-means for the inverted lists (and the SQ8 ranges) on a uniform sample of the corpus.

    Returns whether it ran on GPUs, and the calibration queries with their positions: corpus
    notes taken from the same sample, so that they cost no third pass over the shards.
    """
    rng = np.random.default_rng(p.seed)
    sampled = np.sort(rng.choice(shards.n_rows, p.train_rows(shards.n_rows), replace=False))
    sample = _rows_at(shards, sampled)  # (m, dim)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = p.seed
    on_gpu = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    if on_gpu:  # FAISS's GPU build: k-means assignments on every GPU (the step that grows with nlist)
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(index.d))
    t = time.perf_counter()
    index.train(sample)
    log.info("trained %d lists on %s vectors in %.1f s", p.nlist, f"{len(sample):,}", time.perf_counter() - t)
    chosen = np.sort(rng.choice(len(sample), min(p.calibration_queries, len(sample)), replace=False))
    return on_gpu, sample[chosen], sampled[chosen]


def _rows_at(shards, positions: np.ndarray) -> np.ndarray:
    """The unit vectors at sorted `positions` (in shard order), in one pass."""
    from embednv.shards import iter_batches

    out, start = [], 0
    for _, vectors in iter_batches(shards, BATCH_ROWS):
        lo, hi = np.searchsorted(positions, [start, start + len(vectors)])
        out.append(vectors[positions[lo:hi] - start])
        start += len(vectors)
    return np.concatenate(out) if out else np.empty((0, shards.dim), np.float32)


def _add(index, shards, queries, positions, k: int) -> tuple[list, np.ndarray | None]:
    """Every vector into `index` in shard order; returns the id chunks and, for the queries, the exact top k."""
    from embednv.shards import iter_batches

    chunks, start, keep = [], 0, k + 1
    best_s = np.empty((0 if queries is None else len(queries), 0), np.float32)
    best_p = np.empty(best_s.shape, np.int64)
    t = time.perf_counter()
    for ids, vectors in iter_batches(shards, BATCH_ROWS, with_ids=True):
        index.add(vectors)
        chunks.append(ids)
        rows = np.arange(start, start + len(vectors))
        start += len(vectors)
        if queries is None:
            continue
        scores = queries @ vectors.T  # (q, b)
        scores[positions[:, None] == rows[None, :]] = -np.inf  # a query is not its own neighbour
        best_s = np.concatenate([best_s, scores], axis=1)
        best_p = np.concatenate([best_p, np.broadcast_to(rows, scores.shape)], axis=1)
        if best_s.shape[1] > keep:
            top = np.argpartition(-best_s, keep - 1, axis=1)[:, :keep]
            best_s, best_p = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_p, top, 1)
    if start != shards.n_rows:
        raise IndexingError(f"read {start:,} vectors, the shard footers say {shards.n_rows:,}: did they change?")
    log.info("added %s vectors in %.1f s", f"{start:,}", time.perf_counter() - t)
    if queries is None:
        return chunks, None
    order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
    return chunks, np.take_along_axis(best_p, order, 1)


def _calibrate(faiss, index, queries, positions, truth, p: IndexParams) -> tuple[int, dict]:
    """The smallest power-of-two nprobe reaching `p.target_recall` at k; and recall at each nprobe tried.

    If doubling nprobe gains less than PLATEAU, the codes (8-bit ones), not the lists probed,
    limit recall: the smaller nprobe is kept rather than probing every list for nothing.
    """
    ivf = faiss.extract_index_ivf(index)
    curve, nprobe = {}, 1
    while True:
        ivf.nprobe = nprobe
        _, found = index.search(queries, p.k + 1)
        hits = [len(set(row[row != own][: p.k]) & set(want)) for row, own, want in zip(found, positions, truth)]
        curve[nprobe] = round(sum(hits) / (p.k * len(truth)), 4)
        if curve[nprobe] >= p.target_recall or nprobe >= p.nlist:
            break
        if nprobe > 1 and curve[nprobe] - curve[nprobe // 2] < PLATEAU:
            nprobe //= 2
            log.warning(
                "recall@%d stops at %.3f, below %.2f, from nprobe %d: the codes limit it (--kind ivf keeps whole vectors)",
                p.k,
                curve[nprobe],
                p.target_recall,
                nprobe,
            )
            break
        nprobe = min(2 * nprobe, p.nlist)
    log.info("nprobe %d: recall@%d %.3f on %d corpus queries", nprobe, p.k, curve[nprobe], len(truth))
    ivf.nprobe = nprobe
    return nprobe, curve


class _Phases:
    """Wall seconds per build phase, for the record (docs/scaling.md projects larger builds from them)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
