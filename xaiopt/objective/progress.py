"""Progress lines on stderr for a person watching a run: set-up steps, then finished trials.

Set-up code (building the benchmark, checking a config) reports each step through the logger
``xaiopt.progress`` at INFO level; nothing shows until a :class:`ProgressHandler` is attached,
which the ``xaiopt`` commands do unless ``--no-progress`` is given (and
``optimize(..., progress=True)`` does for its own run). Every line carries the seconds since the
handler was attached::

    xaiopt: [    0.0s] loading model benchmark:vgg (first use: training it on the CPU, then cached; under a minute)
    xaiopt: [   16.2s] loading the evaluation batch: benchmark, 32 samples
    ...
    xaiopt: [   17.9s] trial 0 complete in 0.5 s: 1 of 26 (1 complete); ETA 13 s

During trials, :class:`TrialProgress` keeps one rewritten status line when stderr is a terminal
(trial i of n, state counts, the last trial's seconds, the time left) and otherwise writes one
short line per finished trial, so CI logs and pipes show the progress as well.

Example::

    with progress_to(sys.stderr):
        optimize("quickstart", storage="sqlite:///xaiopt.db", n_trials=5)
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from contextlib import contextmanager
from typing import IO, Iterator

LOGGER = logging.getLogger("xaiopt.progress")


def step(message: str, *args: object) -> None:
    """Report one set-up step (shown only when a :class:`ProgressHandler` is attached)."""
    LOGGER.info(message, *args)


class ProgressHandler(logging.StreamHandler):
    """Writes ``xaiopt: [ELAPSEDs] message`` lines, the seconds counted from its creation."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__(stream if stream is not None else sys.stderr)
        self.start = time.time()

    def format(self, record: logging.LogRecord) -> str:
        return f"xaiopt: [{max(0.0, record.created - self.start):7.1f}s] {record.getMessage()}"

    def elapsed(self) -> float:
        return time.time() - self.start


def _attached() -> ProgressHandler | None:
    return next((h for h in LOGGER.handlers if isinstance(h, ProgressHandler)), None)


@contextmanager
def progress_to(stream: IO[str] | None = None) -> Iterator[ProgressHandler]:
    """Show the progress lines on ``stream`` (stderr) within the block; an outer block's handler
    (and clock) is kept when there is one."""
    handler = _attached()
    if handler is not None:
        yield handler
        return
    handler = ProgressHandler(stream)
    level, propagate = LOGGER.level, LOGGER.propagate
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # `-v` logs to the root logger: no line twice
    try:
        yield handler
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
        LOGGER.propagate = propagate


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "none finished"


class TrialProgress:
    """The worker's trial progress: a rewritten line on a terminal, one line per trial otherwise.

    ``total`` is the number of trials the line counts to (the study's budget, or this worker's
    ``n_trials``), ``done`` how many of them are finished already.
    """

    def __init__(self, name: str, *, total: int | None, done: int, handler: ProgressHandler):
        self.name = name
        self.total = total
        self.done = done
        self.handler = handler
        self.stream = handler.stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.seconds: list[float] = []
        self.counts: dict[str, int] = {}
        self._shown = False

    def _of(self, i: int) -> str:
        return f"{i} of {self.total}" if self.total is not None else str(i)

    def eta(self, remaining: int | None) -> str | None:
        """This worker's mean seconds per trial times the trials left (None before the first)."""
        if not self.seconds or remaining is None:
            return None
        return duration(sum(self.seconds) / len(self.seconds) * max(0, remaining))

    def _status(self, text: str) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = text if len(text) <= width else text[: width - 1] + "…"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._shown = True

    def running(self, remaining: int | None) -> None:
        """A trial starts (on a terminal: the status line says which)."""
        if not self.tty:
            return
        parts = [f"{self.name}: trial {self._of(self.done + 1)} running", _counts(self.counts)]
        if self.seconds:
            parts.append(f"last {self.seconds[-1]:.1f} s")
        eta = self.eta(remaining)
        if eta is not None:
            parts.append(f"ETA {eta}")
        self._status(" · ".join(parts))

    def finished(self, number: int, state: str, seconds: float, *, done: int, remaining: int | None,
                 counts: dict[str, int] | None = None, note: str | None = None) -> None:
        """Trial ``number`` ended in ``state`` after ``seconds``; ``done`` trials of ``total`` are
        finished, ``remaining`` are left for this worker; ``counts`` are the states so far (this
        worker's own when not given)."""
        self.seconds.append(seconds)
        self.done = done
        self.counts[state] = self.counts.get(state, 0) + 1
        if counts is not None:
            self.counts = {k: v for k, v in counts.items()}
        if self.tty:
            return  # the next running() or close() rewrites the line
        eta = self.eta(remaining)
        tail = f"; ETA {eta}" if eta is not None and remaining else ""
        extra = f" ({note})" if note else ""
        LOGGER.info("trial %d %s in %.1f s%s: %s (%s)%s", number, state, seconds, extra, self._of(done),
                    _counts(self.counts), tail)

    def close(self) -> None:
        """The last status line stays on a terminal, with the total time."""
        if self.tty and self._shown:
            self._status(f"{self.name}: {self._of(self.done)} finished · {_counts(self.counts)} · "
                         f"{duration(sum(self.seconds))} in trials")
            self.stream.write("\n")
            self.stream.flush()
