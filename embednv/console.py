"""What the commands print: one log format, and one way to report an error (one line, exit 2).

Imports only the standard library and typer, so every command can use it before anything heavy
is loaded.
"""

from __future__ import annotations

import logging
import sys

import typer

from embednv.errors import one_line
from embednv.text_safety import terminal

LOG_FORMAT = "embednv: %(message)s"

# Ray lines that every healthy run prints and that read like failures; shown with --debug.
# Token authentication on a private instance is what we want, and progress bars are ours.
QUIET_RAY_LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")
NOISY_LIBRARIES = ("ray", "urllib3", "filelock", "transformers", "httpx", "matplotlib", "numba", "openTSNE", "faiss")


def setup_logging(debug: bool, uses_ray: bool = False) -> None:
    """Our INFO lines on stderr; libraries' only from WARNING (everything with --debug)."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_InertFormatter(LOG_FORMAT))
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    if uses_ray and not debug:  # Ray's C++ core: embed.private_ray.quiet_core_log
        for name in QUIET_RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


class _InertFormatter(logging.Formatter):
    """Log lines name files and ids from the user's data: their control and bidi characters are escaped
    (a traceback, added after the message with --debug, keeps its line breaks)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return terminal(super().formatMessage(record))


def say(text: str) -> None:
    """A command's closing line on stdout; it may name files or ids, so it goes through `terminal`."""
    typer.echo(terminal(text))


def fail(error: BaseException, debug: bool) -> None:
    """One clear line and exit code 2; the traceback only with --debug."""
    if debug:
        raise error
    typer.echo(f"error: {one_line(error)}", err=True)
    raise typer.Exit(2)
