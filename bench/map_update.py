"""Placement on a fitted map: `map --update` against a full refit, and sample-then-place against a full fit.

    python bench/map_update.py [--workdir DIR] [--large 100000] [--json docs/benchmarks-map-update.json]

1. update (MTSamples, skipped when ../shared/data has none): its notes deduplicated by text,
   embedded once with the bundled MiniLM (local executor; cached in --workdir). 1,100 notes are
   held out; the rest is mapped (`embednv map`), then all of them: `map --update` (openTSNE
   transform, and the kNN position) against a full refit of every note. Figures: placement time
   vs the refit's time; for the placed notes, the same-cluster rate (each update cluster mapped
   to the refit cluster that holds most of its fitted notes) and kNN preservation@10 (50-d
   neighbours kept in 2-D) on the updated map vs on the refit map; NMI against specialties.
2. sampled (synthetic 384-d vectors in 30 planted clusters at --large notes, and MTSamples): a
   map fitted on a stratified sample with the rest placed vs a full fit, single-scale t-SNE on
   both sides: time, kNN preservation@10 of all notes and of the placed ones, and NMI of the
   2-D map (k-means with k = the number of labels on the x, y coordinates) against the labels.
   The clusters themselves come from k-means on all n in both, so their NMI cannot differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, git_commit, log, machine_info, mtsamples_path, now  # noqa: E402

HELD_OUT, SEED, LARGE_CLUSTERS = 1_100, 0, 30
# Map NMI is k-means on 2-D points against a noisy label: one k-means run moved it by ~0.02 and one
# t-SNE seed by as much (MTSamples, 0.40-0.45 for the same map method), a 10% judgement's width. So
# each map's figure is the mean of KMEANS_RUNS k-means runs, and MTSamples' pair is fitted at
# MTSAMPLES_SEEDS t-SNE seeds a side and reported as the mean (each seed's figures are kept).
KMEANS_RUNS, MTSAMPLES_SEEDS = 5, (0, 1, 2)


def write_emb(emb_dir: Path, ids, x, id_column: str = "note_id") -> None:
    """`x` as the pipeline's shards (one per 50,000 rows), replacing any shards there."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb_dir.mkdir(parents=True, exist_ok=True)
    for old in emb_dir.glob("part-*.parquet"):
        old.unlink()
    for s, start in enumerate(range(0, len(x), 50_000)):
        part = x[start : start + 50_000]
        table = pa.table(
            {
                id_column: ids.slice(start, len(part)),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), x.shape[1]),
                "n_tokens": np.full(len(part), 256, np.int32),
                "n_chunks": np.ones(len(part), np.int32),
            }
        )
        pq.write_table(table, emb_dir / f"part-{s:05d}.parquet")
    manifest = emb_dir / "_manifest.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"id_column": id_column, "dim": x.shape[1]}))


def read_emb(emb_dir: Path):
    import pyarrow.dataset as ds

    table = ds.dataset(str(emb_dir), format="parquet").to_table(columns=["note_id", "embedding"])
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    return table.column("note_id").combine_chunks(), column.flatten().to_numpy().reshape(-1, dim)


def embed_mtsamples(work: Path):
    """Unique non-empty MTSamples notes embedded with MiniLM (cached), and their notes file."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed

    notes = work / "mtsamples-unique.parquet"
    emb = work / "mtsamples-emb"
    if not notes.exists():
        table = pq.read_table(mtsamples_path(), columns=["note_id", "transcription", "medical_specialty"])
        table = table.filter(pc.greater(pc.utf8_length(pc.fill_null(table.column("transcription"), "")), 0))
        seen, keep = set(), []
        for i, text in enumerate(table.column("transcription").to_pylist()):
            if text not in seen:
                seen.add(text)
                keep.append(i)
        pq.write_table(table.take(pa.array(keep)), notes)
    if not (emb / "_SUCCESS").exists():
        start = time.perf_counter()
        run_embed(
            EmbedConfig(
                inputs=(str(notes),), out=str(emb), model="minilm", text_column="transcription", executor="local",
                device="cpu", overwrite=True,
            )
        )  # fmt: skip
        log(f"map_update: embedded MTSamples in {time.perf_counter() - start:.0f} s")
    return notes, emb


QUICK = False  # --quick: short t-SNE runs (a smoke test of the script, not figures)


def fit(emb: Path, out: Path, seed: int = SEED, **kw):
    """`embednv map` (library call) into a fresh `out`; returns (result, seconds, config)."""
    from embednv.mapping.run import MapConfig, run_map
    from embednv.mapping.tsne_params import TSNEParams

    shutil.rmtree(out, ignore_errors=True)
    tsne = TSNEParams(multiscale=False, **({"early_exaggeration_iter": 100, "n_iter": 150} if QUICK else {}))
    config = MapConfig(emb_dir=emb, out_dir=out, backend="cpu", seed=seed, tsne=tsne, **kw)
    start = time.perf_counter()
    result = run_map(config)
    return result, time.perf_counter() - start, config


def load_map(out: Path):
    """ids (list), y (n, 2), clusters (n,), x (n, 50) in map.parquet order."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from embednv.mapping.state import pca_matrix

    table = pq.read_table(out / "map.parquet")
    points = pq.read_table(out / "_points.parquet")
    ids = table.column("note_id").combine_chunks()
    rows = np.asarray(pc.index_in(ids, value_set=points.column("note_id").combine_chunks()), dtype=np.int64)
    y = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()])
    return ids.to_pylist(), y, table.column("cluster").to_numpy(), pca_matrix(points)[rows]


def knn_kept(x, y, rows, k: int = 10) -> float:
    """kNN preservation@k of the points `rows`, neighbours searched among all points."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    found = [NearestNeighbors(n_neighbors=k + 1).fit(s).kneighbors(s[rows], return_distance=False) for s in (x, y)]
    hits = [len(np.intersect1d(h[h != i][:k], low[low != i][:k])) / k for h, low, i in zip(*found, rows)]
    return float(np.mean(hits))


def same_cluster_rate(update: dict, refit: dict, fitted: list, placed: list) -> float:
    """Share of `placed` ids whose update cluster maps to their refit cluster; the map takes each
    update cluster to the refit cluster holding most of its fitted notes."""
    from collections import Counter

    votes: dict[int, Counter] = {}
    for i in fitted:
        votes.setdefault(update[i], Counter())[refit[i]] += 1
    target = {c: v.most_common(1)[0][0] for c, v in votes.items()}
    return sum(target.get(update[i]) == refit[i] for i in placed) / len(placed)


def map_nmi(y, labels) -> float:
    """NMI against `labels` of k-means (k = number of labels) on the 2-D map: the mean of KMEANS_RUNS seeds."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    k = len(set(labels))
    runs = [KMeans(k, n_init=3, random_state=s).fit_predict(y) for s in range(KMEANS_RUNS)]
    return float(np.mean([normalized_mutual_info_score(labels, r) for r in runs]))


def update_section(work: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    notes, emb_all = embed_mtsamples(work)
    ids, x = read_emb(emb_all)
    n = len(ids)
    held = np.zeros(n, bool)
    held[np.random.default_rng(SEED).choice(n, size=min(HELD_OUT, n // 2), replace=False)] = True
    emb = work / "update-emb"
    write_emb(emb, ids.filter(~held), x[~held])
    labels = {"labels": notes, "labels_column": "medical_specialty"}
    base, base_s, config = fit(emb, work / "update-map", **labels)
    write_emb(emb, ids, x)  # the corpus grew by the held-out notes
    runs = {}
    for method in ("opentsne", "knn"):
        out = work / f"update-{method}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(work / "update-map", out)
        start = time.perf_counter()
        from embednv.mapping.run import run_map

        result = run_map(dataclasses.replace(config, out_dir=out, update=True, place_method=method))
        runs[method] = {"seconds": time.perf_counter() - start, "place_seconds": result.timings["place"], "out": out}
    refit, refit_s, _ = fit(emb, work / "update-refit", **labels)
    r_ids, r_y, r_c, r_x = load_map(work / "update-refit")
    refit_cluster = dict(zip(r_ids, r_c.tolist()))
    placed_ids = set(ids.filter(held).to_pylist())
    r_rows = [i for i, v in enumerate(r_ids) if v in placed_ids]
    known = dict(zip(*pq.read_table(notes, columns=["note_id", "medical_specialty"]).to_pydict().values()))
    doc = {
        "notes": n,
        "placed": int(held.sum()),
        "fit_seconds": base_s,
        "refit_seconds": refit_s,
        "refit_timings": {k: round(v, 2) for k, v in refit.timings.items()},
        "refit_knn_placed": knn_kept(r_x, r_y, r_rows),
        "refit_knn_all": refit.metrics["knn_preservation_10"],
        "refit_nmi": refit.metrics.get("nmi"),
        "refit_map_nmi": map_nmi(r_y, [known[i] for i in r_ids]),
        "methods": {},
    }
    for method, run in runs.items():
        u_ids, u_y, u_c, u_x = load_map(run["out"])
        cluster = dict(zip(u_ids, u_c.tolist()))
        rows = [i for i, v in enumerate(u_ids) if v in placed_ids]
        fitted = [v for v in u_ids if v not in placed_ids]
        doc["methods"][method] = {
            "update_seconds": run["seconds"],
            "place_seconds": run["place_seconds"],
            "same_cluster_placed": same_cluster_rate(cluster, refit_cluster, fitted, sorted(placed_ids)),
            "same_cluster_fitted": same_cluster_rate(cluster, refit_cluster, fitted, fitted),
            "knn_placed": knn_kept(u_x, u_y, rows),
            "map_nmi": map_nmi(u_y, [known[i] for i in u_ids]),
        }
        log(f"map_update: {method}: {doc['methods'][method]}")
    return doc


def sampled_pair(
    emb: Path, work: Path, name: str, sample_size: int, labels: list | None = None, seeds=(SEED,), **kw
) -> dict:
    """Full fit vs fit-on-a-sample-then-place of the same embeddings, side by side, at each t-SNE seed.

    Each side's figures are the means over `seeds`; `per_seed` keeps every seed's.
    """
    import numpy as np

    runs = [_sampled_pair_once(emb, work, name, sample_size, labels, seed, **kw) for seed in seeds]
    out = {"n": runs[0]["n"], "sample_size": sample_size, "seeds": list(seeds), "kmeans_runs": KMEANS_RUNS}
    for side in ("full", "sampled"):
        out[side] = {
            key: None if runs[0][side][key] is None else float(np.mean([r[side][key] for r in runs]))
            for key in runs[0][side]
        }
    out["per_seed"] = [{side: r[side] for side in ("full", "sampled")} for r in runs]
    out["sampled_manifest"] = runs[0]["sampled_manifest"]
    log(f"map_update: sampled {name}, mean of seeds {list(seeds)}: full {out['full']}, sampled {out['sampled']}")
    return out


def _sampled_pair_once(emb: Path, work: Path, name: str, sample_size: int, labels, seed: int, **kw) -> dict:
    import json

    import numpy as np

    sides = {}
    for side, extra in (("full", {}), ("sampled", {"sample_above": 0, "sample_size": sample_size})):
        result, seconds, _ = fit(emb, work / f"{name}-{side}", seed=seed, **kw, **extra)
        ids, y, _, x = load_map(work / f"{name}-{side}")
        manifest = json.loads((work / f"{name}-{side}" / "_manifest.json").read_text())
        sides[side] = {"seconds": seconds, "tsne_seconds": result.timings["tsne"], "ids": ids, "y": y, "x": x}
        sides[side]["sampled"] = manifest["sampled"]
        sides[side]["knn_all"] = result.metrics["knn_preservation_10"]
    # The notes the sampled map placed (not in its sample), scored on both maps.
    sampled_dir = work / f"{name}-sampled"
    fitted_rows = _sample_rows(sampled_dir, sides["sampled"]["ids"], sample_size, seed)
    placed = np.setdiff1d(np.arange(len(sides["full"]["ids"])), fitted_rows)
    rng = np.random.default_rng(SEED)
    probe = np.sort(rng.choice(placed, size=min(5_000, len(placed)), replace=False))
    out = {"n": len(sides["full"]["ids"]), "seed": seed}
    for side, s in sides.items():
        out[side] = {
            "seconds": s["seconds"],
            "tsne_seconds": s["tsne_seconds"],
            "knn_all": s["knn_all"],
            "knn_placed": knn_kept(s["x"], s["y"], probe),
            "map_nmi": map_nmi(s["y"], labels) if labels is not None else None,
        }
    out["sampled_manifest"] = sides["sampled"]["sampled"]
    log(f"map_update: sampled {name}, seed {seed}: {out}")
    return out


def _sample_rows(map_dir: Path, ids: list, sample_size: int, seed: int):
    """Rows of the notes in the t-SNE sample: the same stratified sample the map drew."""
    import pyarrow.parquet as pq

    from embednv.mapping.sample import stratified_sample

    clusters = pq.read_table(map_dir / "map.parquet").column("cluster").to_numpy()
    return stratified_sample(clusters, sample_size, seed)


def synthetic(emb: Path, n: int, dim: int = 384):
    """write_synthetic's generator (bench_map.py), keeping each note's planted cluster."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(SEED)
    common, centres = rng.standard_normal(dim), rng.standard_normal((LARGE_CLUSTERS, dim))
    labels = rng.integers(0, LARGE_CLUSTERS, n)
    x = 3 * common / np.linalg.norm(common) + 5 * centres[labels] / np.sqrt(dim)
    x = x + 2 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    write_emb(emb, pa.array(np.arange(n, dtype=np.int64)), x)
    return labels.tolist()


def mtsamples_pair(work: Path) -> dict:
    import pyarrow.parquet as pq

    notes = work / "mtsamples-unique.parquet"
    known = dict(zip(*pq.read_table(notes, columns=["note_id", "medical_specialty"]).to_pydict().values()))
    ids, _ = read_emb(work / "mtsamples-emb")
    labels = [known[i] for i in ids.to_pylist()]
    return sampled_pair(work / "mtsamples-emb", work, "mts", 1_000, labels, seeds=MTSAMPLES_SEEDS)


CORPUS_TOKENS = 64  # MiniLM reads each sample-corpus note's first 64 tokens: 100k notes in ~30 min on 2 cores


def embed_corpus(work: Path, n: int):
    """`n` sample-corpus notes (seed 0) as MiniLM vectors of their first CORPUS_TOKENS tokens, cached in `work`;
    returns (embeddings directory, each row's specialty).

    Whole notes through the pipeline would take ~2 h at 100k here (every token of every window), so the
    bundled MiniLM is called directly (throughput.py's bare model loop: mean pooling, L2 normalisation) on the cut texts.
    """
    import pyarrow.parquet as pq

    from bench.throughput import Ceiling, minilm_path
    from embednv.sample_corpus import write_sample_corpus

    notes, emb = work / f"corpus-{n}.parquet", work / f"corpus-{n}-emb"
    if not notes.exists():
        write_sample_corpus(str(notes), n, 0)
    table = pq.read_table(notes, columns=["note_id", "text", "specialty"])
    labels = table.column("specialty").to_pylist()
    if (emb / "_manifest.json").exists():
        return emb, labels
    start = time.perf_counter()
    vectors = Ceiling(minilm_path(), max_tokens=CORPUS_TOKENS)(table.column("text").to_pylist(), batch_size=64)
    write_emb(emb, table.column("note_id").combine_chunks(), vectors)
    log(
        f"map_update: embedded {n:,} sample-corpus notes ({CORPUS_TOKENS} tokens each) in {time.perf_counter() - start:.0f} s"
    )
    return emb, labels


def corpus_pair(work: Path, n: int, sample: int) -> dict:
    emb, labels = embed_corpus(work, n)
    return {**sampled_pair(emb, work, "corpus", sample, labels), "tokens": CORPUS_TOKENS}


def large_pair(work: Path, n: int, sample: int) -> dict:
    labels = synthetic(work / "large-emb", n)
    return sampled_pair(work / "large-emb", work, "large", sample, labels, clusters=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--large", type=int, default=100_000, help="notes of the synthetic sample-then-place run")
    ap.add_argument("--large-sample", type=int, default=10_000, help="its t-SNE sample (10%%, as 100k of 1M)")
    ap.add_argument("--corpus", type=int, default=100_000, help="sample-corpus notes of that pair (0: skip it)")
    ap.add_argument("--corpus-sample", type=int, default=10_000, help="its t-SNE sample")
    ap.add_argument("--no-mtsamples", action="store_true", help="skip the MTSamples sections (a quick smoke run)")
    ap.add_argument("--quick", action="store_true", help="250 t-SNE iterations, not 750: a smoke test only")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="embednv-map-update-"))
    work.mkdir(parents=True, exist_ok=True)
    started, load = time.perf_counter(), os.getloadavg()[0]
    doc = {
        "command": "python bench/map_update.py"
        + (f" --large {args.large}" if args.large != 100_000 else "")
        + (f" --corpus {args.corpus}" if args.corpus != 100_000 else "")
        + (" --quick" if args.quick else ""),
        "git_commit": git_commit(),
        "generated_at": now(),
        "machine": machine_info(),
        "load_average_1m_at_start": round(load, 2),
        "held_out": HELD_OUT,
    }
    doc["update"] = doc["sampled_mtsamples"] = None
    sections = []
    if not args.no_mtsamples and mtsamples_path() is not None:
        sections += [("update", lambda: update_section(work)), ("sampled_mtsamples", lambda: mtsamples_pair(work))]
    doc["sampled_corpus"] = None
    if args.corpus:
        sections.append(("sampled_corpus", lambda: corpus_pair(work, args.corpus, args.corpus_sample)))
    sections.append(("sampled_large", lambda: large_pair(work, args.large, args.large_sample)))
    for key, section in sections:
        doc[key] = section()
        if args.json:  # each section as it finishes: a run cut short keeps what it measured
            partial = {**doc, "seconds": time.perf_counter() - started, "load_average_1m_at_end": os.getloadavg()[0]}
            Path(args.json).write_text(json.dumps(partial, indent=2, default=str) + "\n")
    doc["seconds"] = time.perf_counter() - started
    doc["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    emit(doc, args.json)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
