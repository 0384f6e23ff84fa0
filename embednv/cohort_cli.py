"""`embednv cohort DIR (--cluster C | --region FILE | --near ID | --query TEXT)`: the typer command; registered by the main app.

Only typer and the standard library are imported at module level, so `embednv --help` stays
instant; `embednv.cohort` (numpy, pyarrow, and torch for --query) loads when the command runs.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from embednv.console import fail, say, setup_logging
from embednv.errors import ConfigError

log = logging.getLogger("embednv")
DEFAULT_K = 50


def cohort_command(
    directory: Annotated[
        str,
        typer.Argument(
            help="A map directory (map.parquet) for --cluster and --region; an embedding directory (part-*.parquet) for --near "
            "and --query. A local path or an s3://, gs:// or file:// URI.",
            show_default=False,
        ),
    ],
    cluster: Annotated[
        int | None, typer.Option("--cluster", help="Write the ids of this cluster (a number from clusters.parquet).")
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help="With --cluster: fine (map.parquet's 'cluster', the default) or coarse (its group of clusters, map.parquet's 'group').",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="A region file map.html downloads (its box or lasso, in map coordinates): write the ids of every "
            "note inside it, drawn on the page or not.",
        ),
    ] = None,
    near: Annotated[
        str | None,
        typer.Option("--near", help="A note id: write the --k notes nearest it by cosine, the note itself excluded."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            help="Text to embed with the model the embeddings' manifest names; write the --k notes nearest it. "
            "'-' reads it from stdin (keeps it out of the process list and shell history). Never logged.",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="With --query on NV-Embed-v2 embeddings: a preset (similar-notes, specialty, diagnosis, cohort) or "
            "free text, giving 'Instruct: {task}\\nQuery: '. Default: similar-notes, the retrieval preset. "
            "Other models (minilm) take no instruction.",
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help=f"Notes to write for --near and --query. Default: {DEFAULT_K}.")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="A .csv or .parquet file (local or URI). Default: CSV on stdout."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="With --query: auto, cpu or cuda, for the model.")] = "auto",
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="With --near or --query: scan every vector instead of the index that `embednv index` built.",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging and full tracebacks.")] = False,
) -> None:
    """Write a cohort as ids: a map cluster, the notes nearest a note, or the notes nearest a query text.

    CSV cells that a spreadsheet would run as formulas (first visible character = + - @) get a leading '.
    """
    setup_logging(debug)
    try:
        _check_options(cluster, level, near, query, task, k, device, region)
        if exact and (cluster is not None or region is not None):
            raise ConfigError("--exact applies to --near and --query")
        from embednv import cohort
        from embednv.io import csv_text, write_table_file

        if cluster is not None:
            cohort.check_directory(directory, "map", "--cluster")
            table = cohort.select_cluster(directory, cluster, level or "fine")
            what = f"{table.num_rows:,} notes of cluster {cluster}"
        elif region is not None:
            from embednv.region import read_region, select_region

            cohort.check_directory(directory, "map", "--region")
            shape = read_region(region)
            table = select_region(directory, shape, cohort.map_id_column(directory))
            what = f"{table.num_rows:,} notes inside the {shape.shape} of {region}"
        else:
            from embednv.shards import open_shards

            cohort.check_directory(directory, "embeddings", "--near" if near is not None else "--query")
            shards = open_shards(directory)
            from embednv.index.search import open_search

            search = open_search(directory, shards, exact)  # a stale index fails here, before any model loads
            k = DEFAULT_K if k is None else k
            if near is not None:
                note_id = cohort.parse_id(near, cohort.id_type(shards))
                vector = cohort.find_vector(shards, note_id, directory)
                table = search.nearest(vector, k, exclude=note_id)
                what = f"{table.num_rows:,} notes nearest note {note_id!r}"
            else:
                text = sys.stdin.read() if query == "-" else query
                if not text or not text.strip():
                    raise ConfigError("--query is empty" + (" (nothing on stdin)" if query == "-" else ""))
                if not debug:  # one query needs no "Loading weights" bar on stderr
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                vector = cohort.query_vector(directory, text, task, device)
                table = search.nearest(vector, k)
                what = f"{table.num_rows:,} notes nearest the query"
        if out is None:
            sys.stdout.write(csv_text(table))
            sys.stdout.flush()
            log.info("wrote %s", what)
        else:
            write_table_file(table, out)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - the edge: one line for the user
        fail(error, debug)
    if out is not None:
        say(f"wrote {what} to {out}")


def _check_options(
    cluster: int | None,
    level: str | None,
    near: str | None,
    query: str | None,
    task: str | None,
    k: int | None,
    device: str,
    region: str | None = None,
) -> None:
    """Exactly one mode, and only the options that mode reads: a typo fails here, not after a long scan."""
    given = [
        name
        for name, value in (("--cluster", cluster), ("--region", region), ("--near", near), ("--query", query))
        if value is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            f"Give exactly one of --cluster, --region, --near, --query (got {' and '.join(given) if given else 'none'})"
        )
    if level is not None and cluster is None:
        raise ConfigError("--level applies to --cluster only")
    if level is not None and level not in ("fine", "coarse"):
        raise ConfigError(f"Invalid --level {level!r}. Valid: fine, coarse")
    if k is not None and (cluster is not None or region is not None):
        raise ConfigError("--k applies to --near and --query; --cluster and --region write every note")
    if k is not None and k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    if task is not None and query is None:
        raise ConfigError("--task applies to --query only")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"Invalid --device {device!r}. Valid: auto, cpu, cuda")
