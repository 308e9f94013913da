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
from typing import Any, Callable, Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError

from xaiopt.errors import ConfigError, StudyError
from xaiopt.study.damage import GuardedSqliteStorage, check_sqlite_file, sqlite_fault
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
    kwargs: dict[str, Any] = {}
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
    if server:
        _require_driver(parsed, url)
    elif path is not None:
        # before Optuna's storage opens it: that writes (its tables, its version) into whatever is there
        check_sqlite_file(path, url)
    kind = RDBStorage if server else GuardedSqliteStorage

    def build() -> RDBStorage:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return kind(url, engine_kwargs=engine_kwargs, **kwargs)
            except (IntegrityError, OperationalError) as err:
                # two processes creating Optuna's tables in a new database at once: one of them
                # wins, and the other finds the tables there on its next try
                racing = isinstance(err, IntegrityError) or "already exists" in str(err)
                if attempt == 4 or not racing:
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
        fault = sqlite_fault(err, url)
        if fault is not None:
            raise fault from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (f" (to wait for a database that is restarting, set {RETRY_ENV}=SECONDS)"
                if is_connection_error(err) else "")
        raise StudyError(f"storage: cannot open {_redact(url)}: {scrub(first, url)}{hint}") from None


# the Python package that provides a SQLAlchemy driver's module, where the two names differ
_DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "mysql": "mysql-connector-python", "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary", "cx_Oracle": "cx_Oracle", "pyodbc": "pyodbc", "pymssql": "pymssql",
}
SUPPORTED_URLS = "sqlite:///FILE.db (one worker) or postgresql+psycopg://USER@HOST/DB (many workers)"


def _require_driver(parsed: URL, url: str) -> None:
    """Refuse a database server URL whose SQLAlchemy dialect or driver module is not there, in one line."""
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StudyError(f"storage: {_redact(url)} names a database kind SQLAlchemy does not know "
                         f"({parsed.drivername!r}); use {SUPPORTED_URLS}") from None
    load = getattr(dialect, "import_dbapi", None) or getattr(dialect, "dbapi", None)
    if load is None:
        return
    try:
        load()
    except ImportError as err:
        module = (err.name or parsed.get_driver_name()).split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        raise StudyError(f"storage: {_redact(url)} needs the database driver {module!r}, which is not installed "
                         f"(pip install {package}); xaiopt supports {SUPPORTED_URLS}") from None


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


# a command that writes a SQLite file briefly (`study create`, `study delete`) holds its lock for a
# second or so; another command waits this long for it, never for a worker
BRIEF_HOLD_SECONDS = 30.0
WORKER = "worker"


def this_process() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class SqliteLock:
    """The held lock of a SQLite file (:func:`sqlite_lock`)."""

    def __init__(self, path: Path, lock: Path):
        self.path = path
        self.lock = lock

    def discard(self) -> None:
        """Remove the lock file, while it is held (a waiter that got the removed file's lock tries again)."""
        self.lock.unlink(missing_ok=True)


@contextmanager
def sqlite_lock(url: str, *, kind: str, holder: str, refuse: Callable[[Path, str], str],
                wait: float = BRIEF_HOLD_SECONDS) -> Iterator[SqliteLock | None]:
    """Hold the one-writer lock of a SQLite file (None for an in-memory database, private anyway).

    ``kind`` is ``worker`` for a worker (held for its lifetime) or what a brief writer does (``create``,
    ``delete``); ``holder`` says who holds it, for another process's message. A lock held by a worker is
    refused at once, with the line ``refuse(file, holder of the lock)``; one held by a brief writer is
    waited for, up to ``wait`` seconds. The lock is an ``flock`` on ``FILE.db.worker-lock``: the kernel
    drops it when the holder dies, even by SIGKILL, so a dead process never blocks the next one.
    """
    path = sqlite_path(url)
    lock = worker_lock_path(url)
    if path is None or lock is None:
        yield None
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # a missing, read-only or not-a-directory folder: one line, nothing made
            raise StudyError(f"storage: cannot write {lock}: {err.strerror or err} (SQLite needs its file's "
                             f"directory writable)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            text = os.pread(fd, 400, 0).decode(errors="replace")
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            held, _, who = text.partition("\t")
            if held == WORKER or time.monotonic() >= deadline:
                raise StudyError(refuse(path, who.strip() or f"another process ({text.strip() or 'unknown'})")) \
                    from None
            time.sleep(0.1)
            continue
        # a holder that we waited for may have removed the lock file: this lock is then on a file that
        # no one else will ever open, and the path's (new) file is the one to lock
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{kind}\t{holder}".encode(), 0)
        try:
            yield SqliteLock(path, lock)
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def sqlite_worker_lock(url: str, *, study: str | None = None) -> Iterator[None]:
    """Hold the one-worker lock of a SQLite file, or refuse with a line that says to use PostgreSQL.

    SQLite serialises every write behind one file lock: several workers (each writing trials,
    heartbeats, artifacts metadata) would stall on "database is locked" and, on a network file
    system, can corrupt the file (:func:`sqlite_lock`).
    """
    of = f", study {study!r}" if study is not None else ""

    def refuse(path: Path, holder: str) -> str:
        return (f"storage: {path} is already used by {holder}; SQLite takes one worker per file: to run several "
                f"workers, use PostgreSQL (--storage postgresql+psycopg://USER@HOST/DB, see docs/scaling.md)")

    with sqlite_lock(url, kind=WORKER, holder=f"a worker ({this_process()}{of})", refuse=refuse):
        yield


class NewStudyFile:
    """Whether ``study create`` made the SQLite file, and its undo (:func:`creating_study`)."""

    def __init__(self, url: str, lock: SqliteLock | None, made: bool):
        self.url = url
        self.lock = lock
        self.made = made

    def remove_if_unused(self, storage: RDBStorage | None) -> bool:
        """Remove the file this process made, if it holds no study (the lock keeps other writers out).

        Never a file that was there before, nor one that another process replaced in the meantime."""
        if not self.made or self.lock is None:
            return False
        if storage is not None:
            if storage.get_all_studies():
                return False
            storage.engine.dispose()
        self.lock.path.unlink(missing_ok=True)
        self.lock.path.with_name(self.lock.path.name + "-journal").unlink(missing_ok=True)
        self.lock.discard()
        return True


@contextmanager
def creating_study(url: str, study: str) -> Iterator[NewStudyFile]:
    """Hold a SQLite file's lock while study ``study`` is written into it; make the file if it is not there.

    Two commands creating a study in one new file at once (two ``xaiopt run``) take turns: the second
    finds the first's study, or its worker, and says so in one line. The file is made here, atomically
    (``O_EXCL``), so that a failed creation removes the file only if this process made it. A database
    server: nothing to hold or make.
    """
    if sqlite_path(url) is None:
        yield NewStudyFile(url, None, False)
        return

    def refuse(path: Path, holder: str) -> str:
        return (f"storage: {path} is in use by {holder}; SQLite takes one writer per file: create study {study!r} "
                f"once it is done, in another file, or in PostgreSQL (--storage postgresql+psycopg://USER@HOST/DB)")

    with sqlite_lock(url, kind="create", holder=f"`study create` ({this_process()}, study {study!r})",
                     refuse=refuse) as lock:
        assert lock is not None
        try:
            os.close(os.open(lock.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            made = True
        except FileExistsError:
            made = False
        except OSError as err:
            raise StudyError(f"storage: cannot create {lock.path}: {err.strerror or err}") from None
        yield NewStudyFile(url, lock, made)
