"""A storage that waits out database outages: Optuna's RDB storage, every call retried with backoff.

A database restart, a failover or dropped connections must not stop a fleet of workers. Every
storage call (trial writes, reads, heartbeats) that fails because the database cannot be reached
is retried with exponential backoff (0.5 s doubling to 8 s, jittered) for up to ``retry_seconds``
(a study's workers: ``runtime.storage_retry_seconds``; every other command, and opening the storage
before a study's config can be read: ``$XAIOPT_STORAGE_RETRY_SECONDS``, default 180 s; ``setting``
names which, in both lines). The first failure prints one line, and the first success
after it prints one line; past the time the call raises :class:`StorageUnavailable` (one line,
exit 75), and the running trial is re-queued by the other workers' heartbeat check.

Errors that are not about reaching the database (an integrity error, a finished trial) are
raised at once. Two cases are resolved rather than retried:

- a write of a trial's final state whose commit reached the database before the connection
  dropped: the retry finds the trial finished; when it finished in the state being written,
  the call succeeds, so a finished computation is recorded once;
- stale-trial detection right after an outage: every worker's heartbeats stopped with the
  database, so each worker skips the check until it has been connected again for longer than the
  stale period. Live workers' trials are therefore never failed and re-run because of the outage
  itself, while a worker that really died is still detected afterwards.

Example::

    storage = ResilientStorage(RDBStorage(url, heartbeat_interval=60), retry_seconds=180)
    study = optuna.load_study(study_name="quickstart", storage=storage)
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from sqlalchemy import exc as sa_exc

from xaiopt.errors import StudyError

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 180.0
RETRY_ENV = "XAIOPT_STORAGE_RETRY_SECONDS"
CONFIG_SETTING = "runtime.storage_retry_seconds"
FIRST_WAIT, LONGEST_WAIT = 0.5, 8.0


class StorageFault(StudyError):
    """A storage that cannot serve the command: one line, with the exit code that says whether to retry."""

    exit_code = 2


class StorageUnavailable(StorageFault):
    """The database stayed unreachable for longer than the configured retry time."""

    exit_code = 75  # EX_TEMPFAIL: a supervisor may restart the worker later


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what caused it, each once."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _unreachable(e: BaseException) -> bool:
    return (isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                           sa_exc.PendingRollbackError, sa_exc.TimeoutError))  # TimeoutError: the pool waited in vain
            or (isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated))


def is_connection_error(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is the database being unreachable, not a bad request."""
    return any(_unreachable(e) for e in _chain(err))


def _first_line(err: BaseException) -> str:
    e: BaseException = err
    while e.__cause__ is not None and isinstance(e, optuna.exceptions.StorageInternalError):
        e = e.__cause__
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# when this process last saw the database come back, on any of its storages: a worker that waited out
# an outage while it opened the study (its first storage) must stay quiet on the one it runs trials on
_LAST_RECOVERY: list[float] = []


class _Outage:
    """Shared by every thread of the process (the trial and its heartbeat thread): one pair of lines per outage."""

    def __init__(self, retry_seconds: float, say: Callable[[str], None], scrub: Callable[[str], str],
                 setting: str | None):
        self.retry_seconds = retry_seconds
        self.setting = setting
        self.say = say
        self.scrub = scrub
        self.lock = threading.Lock()
        self.since: float | None = None
        self.recovered_at: float | None = None
        self.given_up: StorageUnavailable | None = None

    def failed(self, err: BaseException) -> None:
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                where = self.setting or f"the default; {RETRY_ENV} changes it"
                self.say(f"xaiopt: the database is unreachable ({self.scrub(_first_line(err))}); retrying for up to "
                         f"{self.retry_seconds:g} s ({where})")

    def succeeded(self) -> None:
        if self.since is None:  # the common case, without taking the lock
            return
        with self.lock:
            if self.since is not None:
                self.say(f"xaiopt: the database is reachable again after {time.monotonic() - self.since:.1f} s")
                self.since = None
                self.recovered_at = time.monotonic()
                _LAST_RECOVERY[:] = [self.recovered_at]

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.since is not None and time.monotonic() < end:
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def gave_up(self, err: BaseException) -> StorageUnavailable:
        with self.lock:
            if self.given_up is None:
                waited = 0.0 if self.since is None else time.monotonic() - self.since
                where = (f"{self.setting} = {self.retry_seconds:g}" if self.setting else
                         f"the default {self.retry_seconds:g} s; {RETRY_ENV} changes it")
                self.given_up = StorageUnavailable(
                    f"storage: the database stayed unreachable for {waited:.0f} s ({where}): "
                    f"{self.scrub(_first_line(err))}")
            return self.given_up


def _retrying(name: str) -> Callable[..., Any]:
    def call(self: "ResilientStorage", *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    call.__name__ = name
    call.__doc__ = f"RDBStorage.{name}, retried while the database is unreachable."
    return call


def wait_for(build: Callable[[], Any], *, retry_seconds: float, say: Callable[[str], None] | None = None,
             scrub: Callable[[str], str] = lambda s: s, setting: str | None = CONFIG_SETTING) -> Any:
    """``build()``, retried like a storage call while the database is unreachable (opening a storage)."""
    holder = _ResilientBase.__new__(_ResilientBase)
    holder._outage = _Outage(retry_seconds, say or _say, scrub, setting)
    return holder._retry(build, name="open")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _ResilientBase:
    """The retry loop; the storage methods are generated below (:class:`ResilientStorage`)."""

    def __init__(self, inner: RDBStorage, *, retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 say: Callable[[str], None] | None = None, scrub: Callable[[str], str] = lambda s: s,
                 setting: str | None = CONFIG_SETTING):
        if retry_seconds < 0:
            raise ValueError(f"retry_seconds must be >= 0, got {retry_seconds}")
        self._inner = inner
        self._outage = _Outage(retry_seconds, say or _say, scrub, setting)

    def __getattr__(self, name: str) -> Any:  # engine, url, ...: the inner storage's
        return getattr(self._inner, name)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a ResilientStorage holds threads and connections; open one per process")

    @property
    def inner(self) -> RDBStorage:
        return self._inner

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        method = getattr(self._inner, name)
        return self._retry(lambda: method(*args, **kwargs), name=name, args=args, kwargs=kwargs)

    def _retry(self, run: Callable[[], Any], *, name: str, args: tuple[Any, ...] = (),
               kwargs: dict[str, Any] | None = None) -> Any:
        outage = self._outage
        wait = FIRST_WAIT
        retried = False
        while True:
            try:
                result = run()
            except optuna.exceptions.UpdateFinishedTrialError:
                if retried and name == "set_trial_state_values" and self._already_written(args, kwargs or {}):
                    outage.succeeded()
                    return True  # the commit had reached the database before the connection dropped
                raise
            except Exception as err:
                if not is_connection_error(err):
                    raise
                outage.failed(err)
                assert outage.since is not None
                left = outage.retry_seconds - (time.monotonic() - outage.since)
                if left <= 0 or outage.given_up is not None:  # one wait per outage, not one per call
                    raise outage.gave_up(err) from None
                # a disconnected pool is rebuilt on the next checkout (pool_pre_ping); the wait ends
                # early when another thread of this process (the heartbeat, the trial) got through
                outage.pause(min(left, wait * (0.5 + random.random())))
                wait = min(LONGEST_WAIT, wait * 2)
                retried = True
                continue
            outage.succeeded()
            return result

    def _already_written(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        trial_id = kwargs.get("trial_id", args[0] if args else None)
        state = kwargs.get("state", args[1] if len(args) > 1 else None)
        try:
            trial = self._inner.get_trial(trial_id)
        except Exception:
            return False
        return state is not None and trial.state == state

    @property
    def unavailable(self) -> StorageUnavailable | None:
        """The error of the call that gave up, once one has: the worker's exit line."""
        return self._outage.given_up

    def record_heartbeat(self, trial_id: int) -> None:
        # the heartbeat thread has no one to report to: when the database stays away, it stops
        # quietly, and the trial's own next storage call gives the one line
        try:
            self._call("record_heartbeat", (trial_id,), {})
        except StorageUnavailable:
            return

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # right after an outage every worker's heartbeat is old: no trial is called stale until live
        # workers have beaten again. Another worker may notice the database's return up to one
        # backoff wait later than this one, then its heartbeat is due within an interval, and a
        # heartbeat older than the grace period makes a trial stale: the window covers all three.
        # It is checked after the call too, which may itself be the one that waited out the outage.
        interval = self._inner.get_heartbeat_interval() or 0
        grace = getattr(self._inner, "grace_period", None) or 2 * interval
        window = grace + interval + 1.5 * LONGEST_WAIT + 1.0

        def quiet() -> bool:
            seen = [t for t in (self._outage.recovered_at, *_LAST_RECOVERY) if t is not None]
            return bool(seen) and time.monotonic() - max(seen) < window

        if quiet():
            return []
        ids = self._call("_get_stale_trial_ids", (study_id,), {})
        return [] if quiet() else ids


# every storage method of Optuna's interfaces, retried; generated from the interfaces themselves, so
# a method Optuna adds is delegated too (the ABC refuses a class that misses an abstract one)
_METHODS = sorted({
    n for base in (BaseStorage, BaseHeartbeat) for n in dir(base)
    if callable(getattr(base, n)) and (not n.startswith("_") or n == "_get_stale_trial_ids")
    and not n.startswith("__")
} - {"_get_stale_trial_ids"})

ResilientStorage = type(
    "ResilientStorage", (_ResilientBase, BaseStorage, BaseHeartbeat),
    {"__module__": __name__, "__doc__": __doc__.split("\n\n")[0],
     **{n: _retrying(n) for n in _METHODS if n not in vars(_ResilientBase)}},
)


def outage_behind(err: BaseException) -> StorageFault | None:
    """The storage fault that ``err`` comes from, if any: a :class:`StorageFault` somewhere in its chain
    (an outage, a damaged file: an error Optuna raised while it handled it), a damaged or read-only SQLite
    file that no guard named, or a connection error that no retry wrapped."""
    from xaiopt.study.damage import sqlite_fault

    chain = list(_chain(err))
    gone = next((e for e in chain if isinstance(e, StorageFault)), None)
    if gone is not None:
        return gone
    fault = sqlite_fault(err, None)
    if fault is not None:
        return fault
    cause = next((e for e in chain if _unreachable(e)), None)
    return None if cause is None else StorageUnavailable(f"storage: the database connection failed: "
                                                         f"{_first_line(cause)}")


def raise_if_gave_up(storage: Any) -> None:
    """Re-raise a storage's outage error in place of whatever Optuna raised while handling it."""
    gone = getattr(storage, "unavailable", None)
    if isinstance(gone, StorageUnavailable):
        raise gone from None
