"""Shared start-up of the Ray job entry points: join the cluster, run this repo's copy, hand over.

- RAY_ADDRESS defaults to "auto". `ray job submit` already sets it to the cluster's address; a
  script started by hand on a cluster node then joins that node's cluster, and with no cluster
  it fails instead of quietly starting a private single-node Ray (`embednv embed` would).
- This repository goes first on sys.path, so that with `--working-dir .` the uploaded copy of
  `embednv` runs, not whatever version is installed on the node. Ray puts the same copy on the
  workers' path. The line printed on stderr says which copy ran and where Ray was found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli_command(command: str, script: str, argv: list[str] | None = None) -> None:
    """Run `embednv <command>` with this process's arguments, on the running Ray cluster."""
    os.environ.setdefault("RAY_ADDRESS", "auto")  # join a running cluster, never start one
    sys.path.insert(0, str(REPO_ROOT))

    import typer.main

    import embednv
    from embednv.cli import app

    name = Path(script).name
    print(
        f"{name}: embednv {embednv.__version__} from {Path(embednv.__file__).parent}, "
        f"Ray at {os.environ['RAY_ADDRESS']}",
        file=sys.stderr,
    )
    commands = getattr(typer.main.get_command(app), "commands", {})  # several commands: a click group
    if command not in commands:
        sys.exit(f"error: embednv.cli has no {command!r} command (commands: {', '.join(sorted(commands))})")
    commands[command].main(args=sys.argv[1:] if argv is None else argv, prog_name=f"jobs/{name}")
