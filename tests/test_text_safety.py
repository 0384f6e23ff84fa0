"""Text for people is inert: CSV cells no spreadsheet runs, terminal lines no control character rewrites,
and bidi controls shown as escapes, not obeyed (text_safety.py, used by every writer)."""

from __future__ import annotations

import csv
import io
import logging

import numpy as np
import pyarrow as pa
import typer
from typer.testing import CliRunner

from embednv.cohort_cli import cohort_command
from embednv.errors import MapError, one_line
from embednv.io import csv_text
from embednv.mapping.cli import map_command
from embednv.mapping.outputs import write_map

# Every character that reorders displayed text: embeddings, overrides, isolates, LRM/RLM/ALM.
BIDI = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
]

app = typer.Typer()
app.command("map")(map_command)
app.command("cohort")(cohort_command)


@app.callback()
def _root() -> None:
    """A group, as in the main app."""


def test_csv_formulas_behind_whitespace_or_in_full_width_forms_are_neutralised():
    cells = [
        " =1+1",
        "＝1+1",
        "\t=1",
        "\u00a0@SUM(A1)",
        "\r\n-2",
        "＋1",
        "－1",
        "＠x",
        "\u202e=1",
        "  plain",
        "a=b",
        "１２",
    ]
    assert csv_text(pa.table({"note_id": cells})) == (
        '"note_id"\n'
        '"\' =1+1"\n'
        '"\'＝1+1"\n'
        '"\'\t=1"\n'
        '"\'\u00a0@SUM(A1)"\n'
        '"\'\r\n-2"\n'
        '"\'＋1"\n'
        '"\'－1"\n'
        '"\'＠x"\n'
        '"\'\\u202e=1"\n'
        '"  plain"\n'
        '"a=b"\n'
        '"１２"\n'
    )


def test_csv_shows_bidi_and_control_characters_as_escapes():
    ids = [f"a{c}b" for c in BIDI] + ["bell\x07", "esc\x1b[31m", "line\nbreak"]
    text = csv_text(pa.table({"note\u202eid": ids}))
    assert not any(c in text for c in BIDI) and "\x1b" not in text and "\x07" not in text
    cells = [row[0] for row in csv.reader(io.StringIO(text))]
    assert cells == [
        "note\\u202eid",
        *(f"a\\u{ord(c):04x}b" for c in BIDI),
        "bell\\x07",
        "esc\\x1b[31m",
        "line\nbreak",  # a line break inside a quoted cell is data, as before
    ]


def test_error_lines_show_bidi_and_control_characters_as_escapes(tmp_path):
    """A file named `x<RLO>gpj.exe` would print as `xexe.jpg`; an id with ESC could clear the screen."""
    missing = tmp_path / "notes\u202egpj.exe"
    result = CliRunner().invoke(app, ["map", str(missing), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"error: Embedding directory not found: {tmp_path}/notes\\u202egpj.exe"
    assert one_line(MapError("note id 'a\x1b[2Jb\u2067' not found")) == "note id 'a\\x1b[2Jb\\u2067' not found"


def test_log_lines_show_them_as_escapes(capsys):
    from embednv.console import setup_logging

    setup_logging(debug=False)
    logging.getLogger("embednv.test").warning("read %s", "labels\u202e.csv\x1b[31m")
    assert capsys.readouterr().err == "embednv: read labels\\u202e.csv\\x1b[31m\n"


def test_cohort_csv_on_stdout_shows_them_as_escapes(tmp_path):
    ids = [f"id{c}{i}" for i, c in enumerate(BIDI)]
    (tmp_path / "map").mkdir()
    write_map(tmp_path / "map" / "map.parquet", "note_id", pa.array(ids), np.zeros((len(ids), 2)), np.zeros(len(ids)))
    result = CliRunner().invoke(app, ["cohort", str(tmp_path / "map"), "--cluster", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['"note_id"', *(f'"id\\u{ord(c):04x}{i}"' for i, c in enumerate(BIDI))]
