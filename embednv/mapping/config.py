"""What `embednv map` is asked (`MapConfig`, every field recorded in the manifest) and what it did
(`MapResult`): apart from run.py so that a fit (run.py) and an update (update.py) share them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from embednv.columns import DEFAULT_TEXT_COLUMN
from embednv.mapping.drawn import POINT_BUDGET
from embednv.mapping.refine import REFINE_ITER
from embednv.mapping.sample import SAMPLE_ABOVE, SAMPLE_SIZE
from embednv.mapping.tsne_params import TSNEParams


@dataclass(frozen=True)
class MapConfig:
    """What `embednv map` was asked to do; every field is recorded in the manifest."""

    emb_dir: str | Path  # directory of part-*.parquet embedding shards: a path or an s3://, gs://, file:// URI
    out_dir: Path  # MAP_DIR; must be empty or absent unless overwrite
    clusters: int | Literal["auto"] = "auto"  # k; "auto" = clamp(round(sqrt(n/2)), 2, 50)
    tsne: TSNEParams = field(default_factory=TSNEParams)
    backend: str = "auto"  # auto|cuml|cpu
    placement: str = "auto"  # auto|local|gpu-worker: where PCA, k-means and t-SNE run (placement.py)
    seed: int = 0  # one seed for k-means, t-SNE and metric samples: same inputs, same map
    texts: str | Path | None = None  # notes file (a path or URI) (Parquet/CSV/JSONL) with the id column and text
    text_column: str = DEFAULT_TEXT_COLUMN
    labels: str | Path | None = None  # file with known labels; defaults to `texts`
    labels_column: str | None = None  # e.g. "medical_specialty": NMI/ARI and composition
    show_text: bool = False  # put note text in map.html hovers (PHI: off unless asked)
    html_points: int = POINT_BUDGET  # map.html draws every note up to this many, else a sample (drawn.py)
    overwrite: bool = False  # replace map files already in out_dir
    n_components: int = 50  # PCA dims before k-means and t-SNE: denoises, and speeds up kNN
    batch_size: int | Literal["auto"] = "auto"  # rows per record batch; auto ~16 MiB of floats
    knn_sample: int = 5_000
    silhouette_sample: int = 5_000
    sample_above: int = SAMPLE_ABOVE  # above this many notes t-SNE is fitted on a sample, the rest placed
    sample_size: int = SAMPLE_SIZE
    place_method: str = "auto"  # auto|opentsne|knn: how notes are placed on a fitted map (place.py)
    refine_iter: int = REFINE_ITER  # after sample-then-place on CPU: iterations over every note (refine.py)
    update: bool = False  # place the notes of emb_dir not on the map in out_dir yet (update.py)


@dataclass(frozen=True)
class MapResult:
    out_dir: Path
    n: int
    k: int
    backend: str
    metrics: dict
    timings: dict  # seconds per phase
    placement: str = "local"  # where the heavy phases ran: local or gpu-worker
