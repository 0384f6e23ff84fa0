"""Errors a user can fix: the CLI prints their one-line message and exits non-zero, no traceback."""

from __future__ import annotations


class MapError(Exception):
    """A bad input or option for `embednv map`; the message says what and what is allowed."""


class BackendUnavailable(MapError):
    """The requested compute backend cannot run here (e.g. `--backend cuml` without cuML)."""
