"""Reading what a command printed, for the CLI tests: its one error line, its CSV."""

from __future__ import annotations

import csv
import io


def error_line(result) -> str:
    """The one line that is not progress logging (`embednv: ...`)."""
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("embednv: ")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))
