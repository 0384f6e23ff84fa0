"""Where a given Ray address answers: a cluster that is down fails in one line, not a hang.

Ray's own join waits on an address that never answers; embednv first checks that the GCS port
accepts a connection, for CONNECT_TIMEOUT_S (EMBEDNV_RAY_CONNECT_TIMEOUT_S overrides it, for a
head node that takes longer to come up).
"""

from __future__ import annotations

import os
import socket
import time

from embednv.errors import ClusterUnreachable, ConfigError

CONNECT_TIMEOUT_S = 30.0  # how long a given address may take to answer; EMBEDNV_RAY_CONNECT_TIMEOUT_S overrides
CONNECT_TIMEOUT_ENV = "EMBEDNV_RAY_CONNECT_TIMEOUT_S"


def connect_timeout_s() -> float:
    """CONNECT_TIMEOUT_S, or the seconds EMBEDNV_RAY_CONNECT_TIMEOUT_S gives (a slow head node's start)."""
    value = os.environ.get(CONNECT_TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else CONNECT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{CONNECT_TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ConfigError(f"{CONNECT_TIMEOUT_ENV}={value!r} must be a positive number of seconds")
    return seconds


def answering(resolved: str) -> str:
    """`resolved` (host:port, or ray://host:port) once its GCS port accepts a connection;
    ClusterUnreachable after `connect_timeout_s()`. Other forms are Ray's to parse and answer."""
    host, _, port = resolved.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return resolved  # a form Ray parses itself; let it answer
    timeout_s = connect_timeout_s()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return resolved
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ClusterUnreachable(
                    f"Ray cluster at {resolved} did not answer within {timeout_s:g}s ({error.strerror or error}); "
                    "check --address / RAY_ADDRESS, or unset it to run on a private local Ray"
                ) from None
            time.sleep(1.0)
