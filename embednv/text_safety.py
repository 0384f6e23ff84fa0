"""Untrusted text (ids, labels, terms, file names) made inert for each place embednv writes it.

Ids, labels and file names come from the user's data, so any of them may be crafted: a label
`![x](http://host/beacon.png)` is a remote image to a Markdown viewer, `=HYPERLINK(...)` a
formula to a spreadsheet, and a right-to-left override (U+202E) makes `exe.txt` read as
`txt.exe` in a terminal, an editor or a browser ("Trojan Source", CVE-2021-42574). Every
writer goes through one of these functions:

    terminal(text)          log and error lines
    spreadsheet_cell(value) CSV cells (cohort exports; map.js applies the same rule)
    markdown_text(text)     clusters.md table cells
    visible(text, keep)     the base of the others; map.html's data block

Bidi controls and other control characters are not dropped but shown as escapes (`\\u202e`,
`\\x1b`), so two ids that differ only by one never print as the same id. Parquet outputs keep
every value exactly: they are data, not text for people. Standard library only, so the CLI's
error path can use it before anything heavy loads.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode's explicit directional formatting characters (UAX #9): embeddings, overrides,
# isolates, and the implicit marks LRM, RLM and ALM. They reorder the text displayed around them.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_CONTROLS}]")

# A cell whose first visible character is one of these is a formula to a spreadsheet (OWASP
# "CSV injection"); tab and CR at the very start are on OWASP's list too.
FORMULA_CHARS = "=+-@"
FORMULA_PREFIXES = ("\t", "\r")

# Markdown's active characters, backslash-escaped into literals (CommonMark allows it for all
# ASCII punctuation): links and images ([ ] ( ) !), emphasis, code, strikethrough (* _ ` ~),
# table pipes, headings, math ($), and the plugins' ++ == ^ { }. `:`, `/`, `.` and `@` are
# escaped too, which leaves GitHub's and linkify's autolinks no URL, domain or address to find.
# The HTML characters become entities, which every dialect decodes as text (Python-Markdown
# does not honour `\<`). Commas, hyphens and quotes stay as they are: they are inert.
_MARKDOWN_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_MARKDOWN_ACTIVE = frozenset("\\`*_{}[]()#+.!|~^$:/@=")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, keep: str = "") -> str:
    """`text` with bidi controls and control characters (but those in `keep`) written as escapes."""
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def terminal(text: str) -> str:
    """A line for the terminal or a log: no control character can move the cursor, recolour,
    start a fake line or reorder what follows."""
    return visible(str(text))


def spreadsheet_cell(value):
    """A CSV cell: text a spreadsheet would run as a formula gets a leading `'`, and bidi and
    control characters (but tab, CR and LF, which CSV quoting keeps) are escaped. Non-text
    values are returned unchanged.

    Leading whitespace and invisible characters do not make a formula safe (Excel and
    LibreOffice skip them), and neither do full-width forms (`＝1+1`), which some spreadsheets
    read as their ASCII twins: the first visible character is NFKC-normalised before the test.
    """
    if not isinstance(value, str):
        return value
    text = visible(value, keep="\t\r\n")
    return "'" + text if _formula_like(value) else text


def _formula_like(text: str) -> bool:
    if text.startswith(FORMULA_PREFIXES):
        return True
    for char in text:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf"):
            continue  # skipped by spreadsheets before they look for '='
        return unicodedata.normalize("NFKC", char)[:1] in FORMULA_CHARS
    return False


def markdown_text(text) -> str:
    """Untrusted text as inline Markdown that renders as this very text, on one line: no link,
    image, emphasis, code span, HTML tag, entity, table pipe or autolinked URL can form."""
    out = []
    for char in visible(" ".join(str(text).split())):
        if char in _MARKDOWN_ENTITIES:
            out.append(_MARKDOWN_ENTITIES[char])
        elif char in _MARKDOWN_ACTIVE:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)
