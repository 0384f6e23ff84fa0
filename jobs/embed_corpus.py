"""Ray job entry point for `embednv embed`: the same options, run on a running Ray cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/embed_corpus.py s3://bucket/notes/ --out s3://bucket/runs/r1/embeddings \\
        --model /mnt/embednv/models/NV-Embed-v2

Every option is the CLI's (`python jobs/embed_corpus.py --help` prints them); this file only
prepares the process, then hands its arguments to the `embed` command of `embednv.cli`.

What it prepares, and why:
- RAY_ADDRESS defaults to "auto". `ray job submit` already sets it to the cluster's address; a
  script started by hand on a cluster node then joins that node's cluster, and with no cluster
  it fails instead of quietly starting a private single-node Ray (`embednv embed` would).
- This file's repository goes first on sys.path, so that with `--working-dir .` the uploaded
  copy of `embednv` runs, not whatever version is installed on the node. Ray puts the same copy
  on the workers' path. The line printed on stderr says which copy ran and where Ray was found.

See cluster/README.md for submitting to KubeRay or a `ray up` cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND = "embed"


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
