"""Drop the few C++ log lines every healthy Ray run prints on the driver's stderr.

Ray Data always hands its actors their constructor arguments through the object store, and
Ray's C++ core worker reports that as an error-level line (`core_worker.cc: ... has
constructor arguments in the object store and max_restarts > 0`) on every run. Such lines are
written straight to file descriptor 2, past Python's logging, so the only way to keep a clean
log is to read fd 2 through a pipe and pass on everything except the known-benign lines.
Everything else goes through unchanged and in order; `--debug` skips the filter altogether.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

BENIGN = (re.compile(rb"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store"),)
_installed = False


def drop_benign_ray_lines() -> None:
    """Route this process's fd 2 through a filter thread (once per process; POSIX only)."""
    global _installed
    if _installed or os.name != "posix":
        return
    _installed = True
    sys.stderr.flush()
    target = os.dup(2)  # where the lines really go: the terminal, a log file, a pipe
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    # Python's own stderr object keeps its tty-ness for tqdm: it now writes to the pipe on fd 2,
    # but whether it is interactive is decided from the original target.
    interactive = os.isatty(target)
    sys.stderr = _TTYAware(sys.stderr, interactive)
    pump = threading.Thread(target=_pump, args=(read_end, target), name="embednv-stderr", daemon=True)
    pump.start()

    def restore() -> None:  # at exit: hand fd 2 back, then let the pump pass on what is left
        sys.stderr.flush()
        os.dup2(target, 2)
        pump.join(timeout=0.5)  # a Ray child that inherited the pipe may keep it open: do not wait on it

    atexit.register(restore)


def _pump(read_end: int, target: int) -> None:
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not any(p.search(line) for p in BENIGN))
        if b"\r" in pending:  # a progress bar redrawing its line: show it now
            out, pending = out + pending, b""
        if out:
            os.write(target, out)
    if pending:
        os.write(target, pending)


class _TTYAware:
    """sys.stderr as before, but `isatty()` answers for the real destination, not the pipe."""

    def __init__(self, stream, interactive: bool):
        self._stream, self._interactive = stream, interactive

    def isatty(self) -> bool:
        return self._interactive

    def __getattr__(self, name):
        return getattr(self._stream, name)
