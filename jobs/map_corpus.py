"""Ray job entry point for `embednv map`: the same options, run as a job on a Ray cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/map_corpus.py /mnt/embednv/runs/r1/embeddings --out /mnt/embednv/runs/r1/map \\
        --texts /mnt/embednv/notes

Every option is the CLI's (`python jobs/map_corpus.py --help` prints them); this file only
prepares the process as jobs/embed_corpus.py does (RAY_ADDRESS defaults to "auto", so nothing
starts a private Ray; this repository first on sys.path), then hands its arguments to the `map`
command of `embednv.cli`. The map runs in the job's driver, on the head node unless the
submission reserves resources elsewhere (`--entrypoint-num-gpus 1` puts it on a GPU node).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND = "map"


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("RAY_ADDRESS", "auto")  # join a running cluster, never start one
    sys.path.insert(0, str(REPO_ROOT))

    import embednv
    import typer.main

    from embednv.cli import app

    print(f"{Path(__file__).name}: embednv {embednv.__version__} from {Path(embednv.__file__).parent}, "
          f"Ray at {os.environ['RAY_ADDRESS']}", file=sys.stderr)
    commands = getattr(typer.main.get_command(app), "commands", {})  # several commands: a click group
    if COMMAND not in commands:
        sys.exit(f"error: embednv.cli has no {COMMAND!r} command (commands: {', '.join(sorted(commands))})")
    commands[COMMAND].main(args=sys.argv[1:] if argv is None else argv, prog_name=f"jobs/{Path(__file__).name}")


if __name__ == "__main__":
    main()
