"""`embednv index EMB`: build the nearest-neighbour index `cohort --near/--query` answer from.

Only typer and the standard library are imported at module level, so `embednv --help` stays
instant; FAISS, numpy and pyarrow load when the command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from embednv.console import fail, setup_logging
from embednv.errors import ConfigError

KIND_CHOICES = ("auto", "flat", "ivf", "ivf-fp16", "ivf-sq8")  # embednv.index.params.KINDS (kept typer-only here)


def index_command(
    directory: Annotated[
        str,
        typer.Argument(
            help="An embedding directory (part-*.parquet): a local path or an s3://, gs:// or file:// URI. "
            "The index goes into its _index/ folder and its _manifest.json.",
            show_default=False,
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="auto|flat|ivf|ivf-fp16|ivf-sq8. auto = flat (exact) up to 10M floats (n x dim), ivf (whole "
            "vectors) up to 8 GiB of them, then ivf-fp16 (2x smaller). ivf-sq8: 4x smaller, recall capped by its codes.",
        ),
    ] = "auto",
    nlist: Annotated[
        int | None,
        typer.Option("--nlist", help="Inverted lists for ivf kinds. Default: the power of two nearest sqrt(n)."),
    ] = None,
    recall: Annotated[
        float,
        typer.Option("--recall", help="Recall@50 the build calibrates nprobe to, on corpus vectors (ivf kinds)."),
    ] = 0.97,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the training sample, k-means and calibration.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a current index (a stale one is always rebuilt).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging and full tracebacks.")] = False,
) -> None:
    """Build a nearest-neighbour index beside the shards, for `embednv cohort --near/--query`.

    A directory whose shards change afterwards (a resumed or extended run, an update) has a stale
    index: cohort refuses it until this command is run again (or --exact is given).
    """
    setup_logging(debug)
    try:
        if kind not in KIND_CHOICES:
            raise ConfigError(f"Invalid --kind {kind!r}. Valid: {', '.join(KIND_CHOICES)}")
        if not 0 < recall <= 1:
            raise ConfigError(f"--recall must be in (0, 1], got {recall}")
        if nlist is not None and nlist < 1:
            raise ConfigError(f"--nlist must be at least 1, got {nlist}")
        line = build_and_describe(directory, kind, nlist, recall, seed, overwrite)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - the edge: one line for the user
        fail(error, debug)
    typer.echo(line)


def build_and_describe(
    directory: str, kind: str = "auto", nlist: int | None = None, recall: float = 0.97, seed: int = 0, overwrite=False
) -> str:
    """Build (or keep) the index and say so in one line; `embed --index` calls this too."""
    from embednv.cohort import check_directory
    from embednv.index.build import build_index
    from embednv.index.params import IndexParams

    check_directory(directory, "embeddings", "embednv index")
    params = IndexParams(kind=kind, nlist=nlist, target_recall=recall, seed=seed)
    record, built = build_index(directory, params, overwrite=overwrite)
    what = f"{record['kind']} index of {record['n']:,} vectors ({record['dim']}-d)"
    if not built:
        return f"{directory} already has a current {what}: nothing to do"
    p = record["params"]
    tuning = (
        f", {p['nlist']:,} lists, nprobe {p['nprobe']}: recall@{p['k']} {record['calibration']['recall_at_k']:.3f} "
        f"on {p['calibration_queries']} corpus queries"
        if p.get("nlist")
        else ", exact"
    )
    size = sum(record["bytes"].values()) / 2**20
    return f"built the {what}{tuning}, {size:,.1f} MiB, in {record['build_seconds']:.1f} s: {directory}/_index"
