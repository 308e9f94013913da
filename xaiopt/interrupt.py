"""Stop signals that are never lost.

SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``) stop a command by raising KeyboardInterrupt in
the main thread, wherever it is. Where it is may be a finalizer (a weakref callback or ``__del__``
that the garbage collector runs, e.g. SQLAlchemy's ``InstanceState._cleanup``): Python prints
"Exception ignored in ..." and goes on, and the stop is lost. :func:`stop_handler` therefore also
records the signal, and the worker checks :func:`raise_if_stopped` between trials: a swallowed stop
ends the command once the trial at hand is done.

Example::

    signal.signal(signal.SIGTERM, stop_handler)
    ...
    raise_if_stopped()      # KeyboardInterrupt if a stop signal arrived since the last clear()
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def stop_handler(signum: int, frame: FrameType | None) -> None:
    """Record the signal, then raise KeyboardInterrupt as Python's own SIGINT handler does."""
    _received.append(signum)
    raise KeyboardInterrupt


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt if a stop signal arrived (and so was maybe swallowed) since :func:`clear`."""
    if _received:
        raise KeyboardInterrupt


def stopped_by() -> int | None:
    """The first stop signal received since :func:`clear`, or None."""
    return _received[0] if _received else None


def clear() -> None:
    _received.clear()


def install() -> dict[int, object]:
    """Route SIGTERM (when nobody handles it) and SIGINT (when Python's default handles it) through
    :func:`stop_handler`; returns the handlers replaced, for :func:`restore`. A signal that is ignored
    (SIGINT of a background job) stays ignored. Only the main thread can install handlers: elsewhere
    nothing changes."""
    replaced: dict[int, object] = {}
    for signum, theirs in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        try:
            if signal.getsignal(signum) in (theirs, stop_handler):
                replaced[signum] = signal.signal(signum, stop_handler)
        except ValueError:  # not the main thread
            return {}
    return replaced


def restore(replaced: dict[int, object]) -> None:
    for signum, handler in replaced.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
