"""The `embednv` command line: embed notes, make a sample corpus, map the corpus, draw cohorts.

Everything heavy (torch, transformers, ray) is imported inside the commands, so
`embednv --help` answers at once. Environment defaults that keep PHI on the machine are set
here, at the edge, before any library reads them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import typer

from embednv.columns import DEFAULT_ID_COLUMN, DEFAULT_TEXT_COLUMN
from embednv.console import fail, say, setup_logging

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Clinical notes to embeddings (NV-Embed-v2 on Ray) and a map of their cohorts.",
)
log = logging.getLogger("embednv")

# No telemetry, no hub calls unless asked: set before ray or transformers are imported.
for _name, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "true",
    # transformers' own bars ("Loading weights") would interleave with embednv's progress lines.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_name, _value)


@app.command()
def embed(
    inputs: List[str] = typer.Argument(
        ..., help="Parquet, CSV or JSONL files, directories or globs; local paths or URIs (s3://, gs://, file://)."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Output directory or URI for part-*.parquet shards."),
    model: str = typer.Option(
        "auto", help="auto (NV-Embed-v2 with a GPU, else minilm), minilm, nvembed, a checkpoint directory or a hub id."
    ),
    id_column: str = typer.Option(
        DEFAULT_ID_COLUMN, help="Column with each note's unique id; kept with its name and type."
    ),
    id_type: str = typer.Option(
        "string", help="How CSV and JSONL ids are read: string (exactly as written, leading zeros kept) or int."
    ),
    text_column: str = typer.Option(DEFAULT_TEXT_COLUMN, help="Column with the note text."),
    instruction: str = typer.Option(
        "", help="Raw prefix before every note, e.g. 'Instruct: ...\\nQuery: '. Documents take none."
    ),
    task: Optional[str] = typer.Option(
        None, help="Query task (a preset name or free text); builds 'Instruct: {task}\\nQuery: '."
    ),
    max_tokens: Optional[int] = typer.Option(
        None,
        help="Tokens per model input; longer notes are split into overlapping windows. Default: the model's window.",
    ),
    batch_tokens: Optional[int] = typer.Option(
        None, help="Padded tokens per micro-batch. Default: 4096 on CPU, 65536 on GPU."
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16 or float16."),
    cpu_threads: Optional[int] = typer.Option(
        None, help="Torch threads of the CPU embedding actor. Default: every core of its node."
    ),
    num_gpus: Optional[int] = typer.Option(
        None, help="Embedding actors, one per GPU. Default: every GPU in the Ray cluster."
    ),
    max_gpus: Optional[int] = typer.Option(
        None, help="Autoscaling clusters: let the actor pool grow from --num-gpus (default 1) to this many GPUs."
    ),
    rows_per_shard: int = typer.Option(5000, help="Input rows per output shard: the unit of resume."),
    window_rows: int = typer.Option(1024, help="Rows length-sorted together into micro-batches."),
    overwrite: bool = typer.Option(False, help="Replace an existing output instead of resuming or refusing."),
    update: bool = typer.Option(
        False, help="Add to finished embeddings: embed only notes whose id is new or whose text changed."
    ),
    skip_bad_files: bool = typer.Option(False, help="List unreadable input files in the manifest and embed the rest."),
    allow_download: bool = typer.Option(False, help="Let a hub id download into the Hugging Face cache."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to join (host:port or auto). Default: RAY_ADDRESS, else a private local Ray."
    ),
    log_every: float = typer.Option(
        30.0, help="Seconds between progress lines when stderr is not a terminal (job logs, CI)."
    ),
    executor: str = typer.Option(
        "ray", help="ray (a Ray cluster, or a private local Ray) or local (one device in this process, no Ray)."
    ),
    index: bool = typer.Option(
        False, "--index", help="Then build the nearest-neighbour index for cohort queries (as `embednv index OUT`)."
    ),
    debug: bool = typer.Option(False, help="Tracebacks and Ray's own logs."),
) -> None:
    """Embed notes into sharded Parquet: every input row ends up embedded or in _errors/errors.parquet."""
    setup_logging(debug, uses_ray=executor == "ray")
    try:
        from embednv.embed.config import EmbedConfig, check_device_and_dtype, check_id_type
        from embednv.errors import ConfigError

        check_device_and_dtype(device, dtype)
        check_id_type(id_type)
        if task and instruction:
            raise ConfigError("Give --task or --instruction, not both")
        if task:
            from embednv.models.nvembed import build_instruction

            instruction = build_instruction(task)
        if allow_download:
            os.environ["HF_HUB_OFFLINE"] = "0"
        config = EmbedConfig(
            inputs=tuple(inputs),
            out=out,
            model=model,
            id_column=id_column,
            id_type=id_type,
            text_column=text_column,
            instruction=instruction,
            max_tokens=max_tokens,
            batch_tokens=batch_tokens,
            device=device,
            dtype=dtype,
            num_gpus=num_gpus,
            max_gpus=max_gpus,
            rows_per_shard=rows_per_shard,
            window_rows=window_rows,
            overwrite=overwrite,
            update=update,
            skip_bad_files=skip_bad_files,
            allow_download=allow_download,
            debug=debug,
            cpu_threads=cpu_threads,
            address=address,
            log_every=log_every,
            executor=executor,
        )
        from embednv.embed.run import run_embed

        summary = run_embed(config)
        indexed = None
        if index:
            from embednv.index_cli import build_and_describe

            indexed = build_and_describe(out)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - the edge: one line for the user
        fail(error, debug)
    say(summary.line())
    if indexed:
        say(indexed)


@app.command()
def forget(
    emb: str = typer.Argument(..., help="Embeddings directory (embednv embed's --out)."),
    ids: str = typer.Option(
        ..., "--ids", help="The ids to remove: Parquet, CSV (id column or first) or text, one per line."
    ),
    map_dirs: List[str] = typer.Option(
        [], "--map", help="Also a map made from EMB that its manifest does not list (repeatable)."
    ),
    debug: bool = typer.Option(False, help="Tracebacks."),
) -> None:
    """Remove notes from the embeddings, their errors, the cohort index and every map made from them."""
    setup_logging(debug, uses_ray=False)
    try:
        from embednv.forget import forget as forget_ids

        report = forget_ids(emb, ids, tuple(map_dirs))
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - the edge: one line for the user
        fail(error, debug)
    say(report.line(emb))


@app.command("sample-corpus")
def sample_corpus(
    out: Path = typer.Argument(..., help="Parquet file to write (.parquet is added when the name has no extension)."),
    n: int = typer.Option(10_000, "--n", help="Number of notes."),
    seed: int = typer.Option(0, help="Same seed, same notes."),
) -> None:
    """Write a synthetic clinical-note corpus (note_id, text, specialty): no real patient in it."""
    from embednv.sample_corpus import write_sample_corpus

    if not out.suffix:  # `embed` picks the reader by extension: give it one it reads
        out = out.with_suffix(".parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_sample_corpus(str(out), n, seed)
    say(f"wrote {n:,} synthetic notes to {out}")


from embednv.mapping.cli import map_command  # noqa: E402 - typer-only module: keeps --help instant

app.command("map")(map_command)

from embednv.cohort_cli import cohort_command  # noqa: E402 - typer-only module, as map's

app.command("cohort")(cohort_command)

from embednv.index_cli import index_command  # noqa: E402 - typer-only module, as map's

app.command("index")(index_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
