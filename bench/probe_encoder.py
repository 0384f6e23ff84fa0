"""A model that costs nothing, for benchmarks only: measures the pipeline around the model, not the model.

A probe checkpoint is a directory with a tokenizer (any Hugging Face fast tokenizer) and a
config.json giving the width. Its encoder does no arithmetic worth the name: each sequence
becomes a one-hot unit vector at a position derived from its token ids, so the output is
deterministic, unit length and as wide as a real model's. It is not in embednv's registry (no
checkpoint can ask for it): `probe_ref` names it by import path (`ModelRef.loader`), and
`python -m bench.probe_encoder` runs `embed` with it, as the CLI would, for `bench/fanout.py`
to find how many rows one driver can read, tokenize, move and write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from embednv.models.base import ModelRef

PROBE_MODEL_TYPE = "embednv-probe"
LOADER = "bench.probe_encoder:ProbeEncoder"  # importable in Ray workers started from the repository root


class ProbeEncoder:
    """Implements `embednv.models.base.Encoder` with no model at all."""

    def __init__(self, path: str):
        self.dim = int(json.loads((Path(path) / "config.json").read_text())["hidden_size"])

    def embed(self, sequences: Sequence[Sequence[int]], instruction: str = "") -> np.ndarray:
        vectors = np.zeros((len(sequences), self.dim), dtype=np.float32)
        hot = [sum(seq) % self.dim for seq in sequences]
        vectors[np.arange(len(sequences)), hot] = 1.0
        return vectors


def write_probe_checkpoint(directory: Path, tokenizer_dir: Path, dim: int, max_tokens: int = 512) -> Path:
    """A probe checkpoint in `directory` that tokenizes like the model in `tokenizer_dir`."""
    from transformers import AutoTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, use_fast=True).save_pretrained(directory)
    config = {"model_type": PROBE_MODEL_TYPE, "hidden_size": dim, "max_position_embeddings": max_tokens}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def probe_ref(directory: Path) -> "ModelRef":
    """The probe checkpoint in `directory` as a resolved model, named by import path, not by the registry."""
    from embednv.models.base import ModelRef

    config = json.loads((directory / "config.json").read_text())
    dim, window = int(config["hidden_size"]), int(config["max_position_embeddings"])
    return ModelRef("probe", "probe", str(directory), "probe", dim, window, loader=LOADER)


def main() -> None:
    """`embednv embed NOTES --out OUT` with the probe: the same run, log and closing line as the CLI's."""
    import argparse

    from embednv.console import say, setup_logging
    from embednv.embed.config import EmbedConfig
    from embednv.embed.run import run_embed

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("notes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", required=True, help="a directory written by write_probe_checkpoint")
    ap.add_argument("--cpu-threads", type=int)
    ap.add_argument("--log-every", type=float, default=30.0)
    args = ap.parse_args()
    setup_logging(debug=False, uses_ray=True)
    config = EmbedConfig(
        inputs=(args.notes,),
        out=args.out,
        model=probe_ref(Path(args.model)),
        cpu_threads=args.cpu_threads,
        log_every=args.log_every,
    )
    say(run_embed(config).line())


if __name__ == "__main__":
    main()
