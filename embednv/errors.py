"""Every error embednv raises for a user to read, and the one function that prints them.

All share `EmbednvError`, whose message is one line that names the file, row, option or
address at fault. The CLI imports this module without Ray, torch or numpy, so it can tell its
own errors from bugs before anything heavy is loaded.
"""

from __future__ import annotations

from embednv.text_safety import terminal


class EmbednvError(Exception):
    """An error written for the user: its message alone says what is wrong and what to do."""


class ConfigError(EmbednvError, ValueError):
    """An option or a combination of options is invalid."""


class InputError(EmbednvError, ValueError):
    """An input file cannot be used; the message names the file and the problem."""


class ModelError(EmbednvError, ValueError):
    """The model cannot be resolved or loaded; the message says which and why."""


class OutputConflict(EmbednvError, ValueError):
    """The output directory holds another run's results."""


class ClusterUnreachable(EmbednvError, ConnectionError):
    """The Ray address given (flag or RAY_ADDRESS) does not answer."""


class MapError(EmbednvError, ValueError):
    """The map cannot be made from these inputs; the message says why."""


class BackendUnavailable(MapError):
    """The requested compute backend (cuML) cannot run here."""


class CohortError(EmbednvError, ValueError):
    """A cohort cannot be drawn: unknown cluster or note id, wrong directory, model not here."""


class StaleIndex(CohortError):
    """The index beside the shards was built from other shards: rebuild it, or scan with --exact."""


class IndexingError(EmbednvError, ValueError):
    """A nearest-neighbour index cannot be built or read here; the message says why."""


# Errors from the standard library whose messages are already written for a person.
PLAIN_ERRORS = (ValueError, FileNotFoundError, ConnectionError)


def one_line(error: BaseException) -> str:
    """The first line of `error`'s message; unknown error types keep their name so they can be searched.

    Ray wraps an error raised in a worker; the worker's own error (`.cause`) is what is shown.
    Messages name ids and files from the user's data, so control and bidi characters are escaped.
    """
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    message = terminal(" ".join(lines[0].split())) if lines else type(cause).__name__
    if isinstance(cause, (EmbednvError, *PLAIN_ERRORS)):
        return message
    return f"{type(cause).__name__}: {message} (rerun with --debug for details)"
