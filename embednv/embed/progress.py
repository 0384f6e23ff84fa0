"""What a long embed run says while it runs: counts a person (or `ray job logs`) can trust.

The driver counts what has actually landed on it: rows back from the model, tokens, shards on
disk. Without a terminal (job logs, CI, nohup) it logs one line at start, one when a model is
loaded, then one every `log_every` seconds whether or not anything arrived, so a stalled job
shows as a stalled count rather than as silence. Rows come back a window of rows at a time,
and one window can take minutes (a 5 MB note alone is 2,381 model inputs): while one is out,
the line also counts its token windows done, as the actors report them (`ActorReport`). With
a terminal the same figures live in one tqdm bar. Rates and the ETA count from the moment the
first model was loaded, so a slow start does not skew them for the rest of the run. No note
text ever reaches this module.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Iterable

log = logging.getLogger(__name__)

# What actors send the driver: ("model_loaded", seconds, where), e.g. ("model_loaded", 4.2, "cpu on node-3"),
# and ("windows", done, total, actor) for the token windows of the call that actor is working on.
Event = tuple[str, float, str] | tuple[str, int, int, str]


class Progress:
    """Thread-safe counters plus a reporter thread; use as a context manager around the stream."""

    def __init__(
        self,
        total_rows: int,
        total_shards: int,
        shards_done: int = 0,
        log_every: float = 30.0,
        interactive: bool | None = None,
        poll_events: Callable[[], Iterable[Event]] | None = None,
    ):
        if log_every <= 0:
            raise ValueError(f"log_every must be positive, got {log_every}")
        self.total_rows, self.total_shards = total_rows, total_shards
        self.rows = self.tokens = 0
        self.shards = shards_done
        self._windows: dict[str, tuple[int, int]] = {}  # actor -> (windows done, windows) of its call in progress
        self.log_every = log_every
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._poll_events = poll_events
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._since = self._started  # rates count from here: the first model loaded, else the start
        self._bar = None
        self._thread = threading.Thread(target=self._report_loop, name="embednv-progress", daemon=True)

    def __enter__(self) -> Progress:
        if self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_rows, unit="note", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain_events()
        if self._bar is not None:
            self._bar.close()

    def add(self, rows: int, tokens: int, shards_written: int) -> None:
        """Rows (and their tokens) back from the model; shards that this block completed."""
        with self._lock:
            self.rows += rows
            self.tokens += tokens
            self.shards += shards_written
        if self._bar is not None:
            self._bar.update(rows)
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def line(self) -> str:
        """`1,024/3,000 rows embedded (34%), 5/15 shards written | 310.2 notes/s | 78,311 tokens/s | ETA 6s`."""
        with self._lock:
            rows, shards = self.rows, self.shards
        share = f" ({rows / self.total_rows:.0%})" if self.total_rows else ""
        written = f"{rows:,}/{self.total_rows:,} rows embedded{share}, {shards:,}/{self.total_shards:,} shards written"
        return f"{written}{self._windows_in_progress()} | {self._rates()}"

    def _windows_in_progress(self) -> str:
        """` | 1,200/2,381 windows of the rows in progress` while an actor reports a long call, else ``."""
        with self._lock:
            calls = list(self._windows.values())
        if not calls:
            return ""
        return f" | {sum(d for d, _ in calls):,}/{sum(t for _, t in calls):,} windows of the rows in progress"

    def _rates(self) -> str:
        with self._lock:
            since, rows, tokens = self._since, self.rows, self.tokens
        now = time.monotonic()
        if rows == 0:
            return f"waiting for the first rows ({format_seconds(now - self._started)})"
        seconds = max(now - since, 1e-3)
        notes_rate, token_rate = rows / seconds, tokens / seconds
        eta = (self.total_rows - rows) / notes_rate
        return f"{notes_rate:,.1f} notes/s | {token_rate:,.0f} tokens/s | ETA {format_seconds(eta)}"

    def _postfix(self) -> str:
        with self._lock:
            shards, tokens = self.shards, self.tokens
        return f"{shards}/{self.total_shards} shards, {tokens:,} tokens{self._windows_in_progress()}"

    def _report_loop(self) -> None:
        next_line = time.monotonic() + self.log_every
        while not self._stop.wait(timeout=min(1.0, self.log_every)):
            self._drain_events()
            if not self.interactive and time.monotonic() >= next_line:
                log.info(self.line())
                next_line += self.log_every

    def _drain_events(self) -> None:
        if self._poll_events is None:
            return
        try:
            events = list(self._poll_events())
        except Exception as error:  # noqa: BLE001 - progress must never break the run
            log.debug("could not read progress events: %s", error)
            return
        for event in events:
            if event[0] == "model_loaded":
                _, seconds, where = event
                with self._lock:
                    if self.rows == 0 and self._since == self._started:
                        self._since = time.monotonic()
                self._say(f"model loaded in {seconds:.1f}s ({where})")
            elif event[0] == "windows":
                _, done, total, actor = event
                with self._lock:
                    if done < total:
                        self._windows[actor] = (done, total)
                    else:  # that call is over: its rows are on their way
                        self._windows.pop(actor, None)
        if events and self._bar is not None:
            self._bar.set_postfix_str(self._postfix())

    def _say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(f"embednv: {message}", file=sys.stderr)
        else:
            log.info(message)


def block_counts(block) -> tuple[int, int]:
    """(rows, tokens of the rows embedded) of a block back from the model, for `Progress.add`."""
    import pyarrow.compute as pc

    from embednv.columns import ERROR, N_TOKENS

    ok = block.column(ERROR).is_null()
    return len(block), int(pc.sum(pc.if_else(ok, block.column(N_TOKENS), 0)).as_py() or 0)


class ActorReport:
    """What an embed actor tells the driver's `Progress`, through `send` (a queue's put_nowait).

    `windows` is `embed_notes`' `on_windows`: called with (0, total) when a call starts and after
    every micro-batch, it sends at most one message every `every` seconds, so a call of many
    windows shows progress and a short one sends nothing. A call that sent anything also sends
    its end, so that the driver forgets it. A message that cannot be sent is dropped: progress
    must never stop the actor.
    """

    def __init__(self, send: Callable[[Event], object], actor: str, every: float = 1.0):
        self._send, self.actor, self.every = send, actor, every
        self._last = time.monotonic()
        self._sent = False

    def model_loaded(self, seconds: float, where: str) -> None:
        self._put(("model_loaded", seconds, where))

    def windows(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0:
            self._last, self._sent = now, False
        elif done >= total:
            if self._sent:
                self._put(("windows", done, total, self.actor))
        elif now - self._last >= self.every:
            self._last, self._sent = now, True
            self._put(("windows", done, total, self.actor))

    def _put(self, event: Event) -> None:
        try:
            self._send(event)
        except Exception:  # noqa: BLE001 - a lost progress message must never stop the actor
            pass


def format_seconds(seconds: float) -> str:
    """37s, 12m05s, 3h07m: what a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
