"""What a run is asked to do: frozen settings built once at the edge (CLI or job) and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from embednv.columns import DEFAULT_ID_COLUMN, DEFAULT_TEXT_COLUMN
from embednv.embed.fields import ID_TYPES, IdType
from embednv.models.base import ModelRef

Device = Literal["auto", "cpu", "cuda"]
Executor = Literal["ray", "local"]
DType = Literal["auto", "float32", "bfloat16", "float16"]

# Token budget per micro-batch (longest window x batch size). On CPU small batches are faster
# (measured on MiniLM, 2 cores: 19.1 s at 4,096 tokens vs 23.0 s at 16,384 for the same notes);
# on a GPU a larger budget keeps the tensor cores fed (see docs/benchmarks.md).
DEFAULT_BATCH_TOKENS = {"cpu": 4_096, "cuda": 65_536}


@dataclass(frozen=True)
class EmbedConfig:
    inputs: tuple[str, ...]
    out: str
    model: str | ModelRef = "auto"  # "auto", "minilm", "nvembed", a checkpoint directory or a hub id; or resolved
    id_column: str = DEFAULT_ID_COLUMN
    id_type: IdType = "string"  # CSV and JSONL ids: as written ("007" stays "007"), or "int"; Parquet keeps its type
    text_column: str = DEFAULT_TEXT_COLUMN
    instruction: str = ""  # raw prefix; documents are embedded without one (see models/nvembed.py)
    max_tokens: int | None = None  # window per model input; None = the model's own
    batch_tokens: int | None = None  # None = DEFAULT_BATCH_TOKENS for the device
    device: Device = "auto"
    dtype: DType = "auto"  # auto = bfloat16 on GPU, float32 on CPU
    num_gpus: int | None = None  # embedding actors on GPUs; None = every GPU in the cluster
    max_gpus: int | None = None  # autoscaling clusters: grow the actor pool from num_gpus up to this
    rows_per_shard: int = 5_000  # one output file per this many input rows: the unit of resume
    window_rows: int = 1_024  # rows sorted together into micro-batches: bounded, never the corpus
    cpu_threads: int | None = None  # torch threads for a CPU actor; None = all cores of its node
    overwrite: bool = False
    # Add to a finished output: embed only notes whose id is new or whose text changed (embed/update.py).
    update: bool = False
    skip_bad_files: bool = False
    allow_download: bool = False  # let a hub id download into the HF cache (driver only)
    address: str | None = None  # Ray cluster to join; None = RAY_ADDRESS, else a private local instance
    log_every: float = 30.0  # seconds between progress lines when there is no terminal
    debug: bool = False
    # "ray": read tasks and one embedding actor per GPU on a Ray cluster (or a private local one);
    # "local": the same stages in this process on one device, without Ray (embed/local_job.py).
    executor: Executor = "ray"


DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("ray", "local")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_device_and_dtype(device: str, dtype: str, prefix: str = "--") -> None:
    """Refuse an unknown device or dtype by name; `prefix` is how the caller spells options ("--" on the CLI)."""
    from embednv.errors import ConfigError

    if device not in DEVICES:
        raise ConfigError(f"Invalid {prefix}device {device!r}. Valid: {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise ConfigError(f"Invalid {prefix}dtype {dtype!r}. Valid: {', '.join(DTYPES)}")


def check_executor(config: EmbedConfig, prefix: str = "--") -> None:
    """The local executor runs one device in this process: options that need a cluster are refused."""
    from embednv.errors import ConfigError

    if config.executor not in EXECUTORS:
        raise ConfigError(f"Invalid {prefix}executor {config.executor!r}. Valid: {', '.join(EXECUTORS)}")
    if config.update and config.overwrite:
        raise ConfigError(f"Give {prefix}update or {prefix}overwrite, not both")
    if config.executor == "local":
        clustered = {"address": config.address, "num-gpus": (config.num_gpus or 1) > 1, "max-gpus": config.max_gpus}
        given = [f"{prefix}{name}" for name, value in clustered.items() if value]
        if given:
            raise ConfigError(f"{', '.join(given)} need the Ray executor; {prefix}executor local runs one device")


def check_id_type(id_type: str, prefix: str = "--") -> None:
    from embednv.errors import ConfigError

    if id_type not in ID_TYPES:
        raise ConfigError(f"Invalid {prefix}id-type {id_type!r}. Valid: {', '.join(ID_TYPES)}")


def default_dtype(dtype: str, device: str) -> str:
    """ "auto" is bfloat16 on a GPU (NV-Embed-v2's own), float32 on CPU (bfloat16 is slow there)."""
    return dtype if dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
