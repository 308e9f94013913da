"""Storage URLs: SQLite embedded by default, PostgreSQL (or any SQLAlchemy URL) for many workers."""

from __future__ import annotations

import errno
import fcntl
import math
import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from xaiopt.errors import ConfigError, StudyError
from xaiopt.study.resilient import (
    CONFIG_SETTING,
    DEFAULT_RETRY_SECONDS,
    RETRY_ENV,
    ResilientStorage,
    is_connection_error,
    wait_for,
)

DEFAULT_STORAGE = "sqlite:///xaiopt.db"
STORAGE_ENV = "XAIOPT_STORAGE"


def default_storage_url() -> str:
    """``$XAIOPT_STORAGE`` if set, else ``sqlite:///xaiopt.db`` in the working directory."""
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def env_retry_seconds() -> float | None:
    """``$XAIOPT_STORAGE_RETRY_SECONDS`` as seconds, None when unset; a value that is not a number >= 0 is one line."""
    raw = os.environ.get(RETRY_ENV, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{RETRY_ENV}: {raw!r} is not a number of seconds (valid: a number >= 0, e.g. 30)")
    return seconds


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for in-memory databases)."""
    if not is_sqlite(url):
        return None
    db = make_url(url).database
    if not db or db == ":memory:":
        return None
    return Path(db)


def stale_after(heartbeat_interval: int) -> int:
    """Seconds without a heartbeat after which a running trial is stale: two missed beats, plus slack
    so that a busy machine (a heartbeat thread waiting for the GIL) is not mistaken for a dead one."""
    return 2 * heartbeat_interval + 3


def open_storage(url: str | None, *, heartbeat_interval: int | None = None, must_exist: bool = False,
                 retry_seconds: float | None = None) -> RDBStorage:
    """Open (and create the tables of) an Optuna RDB storage; one-line :class:`StudyError` on failure.

    With ``heartbeat_interval``, running trials send heartbeats and a trial whose worker died is
    detected as stale (after :func:`stale_after` seconds) and re-queued as a waiting trial, at most 3 times.

    A database server's storage (not SQLite) comes wrapped in a
    :class:`~xaiopt.study.resilient.ResilientStorage`: every call waits out an unreachable
    database for up to ``retry_seconds`` (a study's ``runtime.storage_retry_seconds``, given for its
    workers), else ``$XAIOPT_STORAGE_RETRY_SECONDS``, else 180 s. With either of the first two,
    opening the storage waits out an outage too (a command started while the database restarts);
    with neither, a database that cannot be reached at open is one line at once.
    """
    url = url or default_storage_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StudyError(
            f"storage: {url!r} is not a database URL (valid: sqlite:///FILE.db, postgresql+psycopg://USER@HOST/DB)"
        ) from None
    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise StudyError(f"storage: {path} does not exist (create a study there first with `xaiopt study create`)")
    if path is not None and not path.parent.exists():
        raise StudyError(f"storage: directory {path.parent} of {url!r} does not exist")
    kwargs = {}
    if heartbeat_interval:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = dict(
                heartbeat_interval=heartbeat_interval,
                grace_period=stale_after(heartbeat_interval),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    server = parsed.get_backend_name() != "sqlite"
    engine_kwargs = {"pool_pre_ping": True} if server else {}

    def build() -> RDBStorage:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            except IntegrityError:
                # two processes creating Optuna's tables in a new database at once: one of them
                # wins, and the other finds the tables there on its next try
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    try:
        if not server:
            return build()
        # the study's own setting governs its workers; the variable, every command without one
        env = env_retry_seconds()
        wait, setting = ((retry_seconds, CONFIG_SETTING) if retry_seconds is not None else
                         (env, RETRY_ENV) if env is not None else (DEFAULT_RETRY_SECONDS, None))

        def masked(text: str) -> str:
            return scrub(text, url)

        patient = retry_seconds is not None or env is not None
        inner = wait_for(build, retry_seconds=wait, scrub=masked, setting=setting) if patient else build()
        return ResilientStorage(inner, retry_seconds=wait, scrub=masked, setting=setting)
    except ModuleNotFoundError as err:
        raise StudyError(f"storage: the database driver for {_redact(url)!r} is not installed ({err.name}; "
                         f"for PostgreSQL: pip install 'psycopg[binary]')") from None
    except (SQLAlchemyError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (f" (to wait for a database that is restarting, set {RETRY_ENV}=SECONDS)"
                if is_connection_error(err) else "")
        raise StudyError(f"storage: cannot open {_redact(url)}: {scrub(first, url)}{hint}") from None


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (and the URL itself) masked, for messages and logs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return text
    text = text.replace(url, _redact(url))
    if parsed.password:
        text = text.replace(str(parsed.password), "***")
    return text


def worker_lock_path(url: str) -> Path | None:
    path = sqlite_path(url)
    return None if path is None else path.with_name(path.name + ".worker-lock")


@contextmanager
def sqlite_worker_lock(url: str) -> Iterator[None]:
    """Hold the one-worker lock of a SQLite file, or refuse with a line that says to use PostgreSQL.

    SQLite serialises every write behind one file lock: several workers (each writing trials,
    heartbeats, artifacts metadata) would stall on "database is locked" and, on a network file
    system, can corrupt the file. The lock is an ``flock`` on ``FILE.db.worker-lock``: the kernel
    drops it when the holder dies, even by SIGKILL, so a dead worker never blocks the next one.
    """
    lock = worker_lock_path(url)
    if lock is None:  # in-memory: private to this process anyway
        yield
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise StudyError(
                f"storage: {sqlite_path(url)} is already used by a worker (pid {holder}); SQLite takes one "
                f"worker per file: to run several workers, use PostgreSQL "
                f"(--storage postgresql+psycopg://USER@HOST/DB, see docs/scaling.md)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
