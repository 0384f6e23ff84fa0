"""`embednv map EMB_DIR --out MAP_DIR`: the typer command; registered by the main app.

Only typer and the standard library are imported at module level, so `embednv --help` stays
instant; the mapping code (numpy, scikit-learn, openTSNE, matplotlib) loads when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embednv.columns import DEFAULT_TEXT_COLUMN
from embednv.console import fail, say, setup_logging
from embednv.errors import ConfigError

BACKEND_CHOICES = ("auto", "cuml", "cpu")
PLACEMENT_CHOICES = ("auto", "local", "gpu-worker")  # embednv.mapping.placement.PLACEMENTS (kept typer-only here)
MULTISCALE_CHOICES = {"auto": "auto", "on": True, "off": False}
PLACE_METHODS = ("auto", "opentsne", "knn")  # embednv.mapping.place.METHODS
SAMPLE_ABOVE, SAMPLE_SIZE = 200_000, 100_000  # embednv.mapping.sample's (kept typer-only here; a test checks)
REFINE_ITER = 150  # embednv.mapping.refine's (the same)


def map_command(
    emb_dir: Annotated[
        str,
        typer.Argument(
            help="Embedding directory (part-*.parquet shards from `embednv embed`): a local path or an s3://, gs:// or file:// URI."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Map directory to write (map.parquet, clusters, map.png, map.html, metrics)."),
    ],
    clusters: Annotated[
        str, typer.Option("--clusters", help="Number of k-means clusters; auto = clamp(round(sqrt(n/2)), 2, 50).")
    ] = "auto",
    perplexity: Annotated[
        str,
        typer.Option("--perplexity", help="t-SNE perplexity; auto = 30, plus n/100 as a second scale for n <= 20k."),
    ] = "auto",
    backend: Annotated[
        str, typer.Option("--backend", help="auto|cuml|cpu; auto = cuML when installed with a CUDA GPU, else CPU.")
    ] = "auto",
    placement: Annotated[
        str,
        typer.Option(
            "--placement",
            help="auto|local|gpu-worker: where PCA, k-means and t-SNE run. gpu-worker = one Ray task with 1 GPU "
            "on the cluster in RAY_ADDRESS; auto = that when the cluster has a GPU, else this process.",
        ),
    ] = "auto",
    multiscale: Annotated[
        str,
        typer.Option(
            "--multiscale",
            help="auto|on|off: t-SNE second scale n/100; auto = on for n <= 20k (its cost grows ~n²).",
        ),
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed for k-means, t-SNE and metric samples.")] = 0,
    texts: Annotated[
        str | None,
        typer.Option("--texts", help="Notes file (Parquet/CSV/JSONL) with the id column and text: cluster terms."),
    ] = None,
    text_column: Annotated[str, typer.Option("--text-column", help="Text column in --texts.")] = DEFAULT_TEXT_COLUMN,
    labels: Annotated[
        str | None, typer.Option("--labels", help="File with known labels (default: the --texts file).")
    ] = None,
    labels_column: Annotated[
        str | None, typer.Option("--labels-column", help="Known-label column: NMI/ARI and label mix per cluster.")
    ] = None,
    show_text: Annotated[
        bool,
        typer.Option("--show-text/--no-show-text", help="Show note text on hover in map.html (PHI: off by default)."),
    ] = False,
    html_points: Annotated[
        int,
        typer.Option(
            "--html-points",
            help="map.html draws every note up to this many; above, a sample keeping each cluster's share and "
            "every exemplar (map.parquet and cohort --region keep every note).",
        ),
    ] = 1_000_000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the map files already in --out.")] = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Place the notes of EMB_DIR not on the map in --out yet (and changed ones again), drop those "
            "no longer in EMB_DIR; the notes already on the map do not move. No refit.",
        ),
    ] = False,
    sample_above: Annotated[
        int,
        typer.Option(
            "--sample-above",
            help="Above this many notes, fit t-SNE on a sample (--sample-size, every cluster kept) and place the rest.",
        ),
    ] = SAMPLE_ABOVE,
    sample_size: Annotated[int, typer.Option("--sample-size", help="Notes in that t-SNE sample.")] = SAMPLE_SIZE,
    place_method: Annotated[
        str,
        typer.Option(
            "--place-method",
            help="auto|opentsne|knn: how notes are placed on a fitted map. --update: auto = openTSNE's transform "
            "on CPU, kNN-weighted position on cuML; a sampled map: auto = kNN-weighted position, then --refine-iter.",
        ),
    ] = "auto",
    refine_iter: Annotated[
        int,
        typer.Option(
            "--refine-iter",
            help="A sampled map on CPU: t-SNE iterations over every note once the rest is placed (0: none).",
        ),
    ] = REFINE_ITER,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging and full tracebacks.")] = False,
) -> None:
    """Map note embeddings: PCA, k-means cohorts, t-SNE, cluster terms, PNG and offline HTML."""
    setup_logging(debug)
    try:
        from embednv.mapping.run import MapConfig, run_map
        from embednv.mapping.tsne_params import TSNEParams

        if backend not in BACKEND_CHOICES:
            raise ConfigError(f"Invalid --backend {backend!r}. Valid: {', '.join(BACKEND_CHOICES)}")
        if placement not in PLACEMENT_CHOICES:
            raise ConfigError(f"Invalid --placement {placement!r}. Valid: {', '.join(PLACEMENT_CHOICES)}")
        if place_method not in PLACE_METHODS:
            raise ConfigError(f"Invalid --place-method {place_method!r}. Valid: {', '.join(PLACE_METHODS)}")
        if update and overwrite:
            raise ConfigError("--update places notes on the map in --out; --overwrite replaces it: give one")
        if refine_iter < 0:
            raise ConfigError(f"--refine-iter must be at least 0, got {refine_iter}")
        if sample_size < 2 or sample_above < 0:
            raise ConfigError(
                f"--sample-size must be at least 2 and --sample-above at least 0, got {sample_size}, {sample_above}"
            )
        if multiscale not in MULTISCALE_CHOICES:
            raise ConfigError(f"Invalid --multiscale {multiscale!r}. Valid: {', '.join(MULTISCALE_CHOICES)}")
        if html_points < 1:
            raise ConfigError(f"--html-points must be at least 1, got {html_points}")
        config = MapConfig(
            emb_dir=emb_dir,
            out_dir=out,
            clusters=_auto_or(clusters, int, "--clusters"),
            tsne=TSNEParams(
                perplexity=_auto_or(perplexity, float, "--perplexity"), multiscale=MULTISCALE_CHOICES[multiscale]
            ),
            backend=backend,
            placement=placement,
            seed=seed,
            texts=texts,
            text_column=text_column,
            labels=labels,
            labels_column=labels_column,
            show_text=show_text,
            html_points=html_points,
            overwrite=overwrite,
            update=update,
            sample_above=sample_above,
            sample_size=sample_size,
            place_method=place_method,
            refine_iter=refine_iter,
        )
        result = run_map(config)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - the edge: one line for the user
        fail(error, debug)
    if update:
        say(f"map of {result.n:,} notes updated in {result.out_dir}")
        return
    say(f"map of {result.n:,} notes ({result.k} clusters, {result.backend}) written to {result.out_dir}")


def _auto_or(value: str, kind: type, option: str):
    if value == "auto":
        return "auto"
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"Invalid {option} {value!r}: expected 'auto' or {what}") from None
