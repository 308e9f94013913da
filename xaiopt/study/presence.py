"""Live workers, known to the database: a study is not deleted under them, and a worker whose study
was deleted anyway stops in one line.

A worker holds its study for its lifetime: on PostgreSQL a shared advisory lock (keys: xaiopt's
namespace and the study's id) in a session of its own, named ``xaiopt worker HOST:PID``; on SQLite
the file's worker lock (:func:`xaiopt.study.storage.sqlite_worker_lock`). The database server
drops the lock with the session, when the worker exits or dies, so no record of a worker outlives it.
``study delete`` takes the lock exclusively: while any worker holds it, the delete is refused with
one line that names the workers. A study deleted regardless (by a tool that takes no lock, such as
``optuna delete-study``, or while a worker's session was cut by an outage) is noticed by the
worker between trials, or by the failure it causes in one: the worker stops with
:class:`StudyDeleted`, exit 2, as a worker started after the deletion would.

Example::

    with worker_presence(loaded) as presence:
        presence.check()   # between trials: StudyDeleted once the study is gone
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from xaiopt.errors import StudyError
from xaiopt.study.storage import (
    BRIEF_HOLD_SECONDS,
    _redact,
    sqlite_lock,
    sqlite_path,
    sqlite_worker_lock,
    this_process,
)

# the first key of xaiopt's advisory locks ("xaip"); the second is the study's id
ADVISORY_SPACE = 0x78616970
APP_PREFIX = "xaiopt worker "


class StudyDeleted(StudyError):
    """The study was deleted while this worker ran: its trials went with it, so the worker stops."""

    exit_code = 2


def _is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _lock_engine(url: str, application: str) -> Engine:
    # a session of its own, outside the storage's pool: the lock lives exactly as long as it does; the
    # libpq drivers name it, so that `study delete` can say which workers hold the study
    libpq = make_url(url).get_driver_name() in ("psycopg", "psycopg2")
    args = {"application_name": application[:63], "connect_timeout": 10} if libpq else {}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def _session(engine: Engine) -> Connection:
    # autocommit: a session-level advisory lock needs no transaction, and an idle one open for a
    # worker's lifetime would hold back the server's vacuum
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def study_exists(storage: Any, study_id: int) -> bool:
    try:
        storage.get_study_name_from_id(study_id)
    except KeyError:
        return False
    return True


class WorkerPresence:
    """A worker's hold on its study (:func:`worker_presence`)."""

    def __init__(self, study: optuna.Study, url: str):
        self.study = study
        self.name = study.study_name
        self.study_id = study._study_id
        self.url = url
        self._engine: Engine | None = None
        self._conn: Connection | None = None

    def gone(self) -> bool:
        """Whether the study is no longer in the database (an error reaching it is raised as it is)."""
        return not study_exists(self.study._storage, self.study_id)

    def raise_if_deleted(self) -> None:
        if self.gone():
            raise StudyDeleted(f"study {self.name!r} was deleted while this worker ran (its trials went with it); "
                               f"stopping")

    def check(self) -> None:
        """Between trials: re-take the lock if the worker's session was cut (an outage); the study must still exist."""
        if self._engine is not None and not self._alive():
            try:
                self._take()
            except Exception:  # noqa: BLE001 - the database is away: the storage's own calls wait and say so
                self._drop()
        self.raise_if_deleted()

    def _alive(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means the session (and its lock) is gone
            self._drop()
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken session
                pass
            self._conn = None

    def _take(self) -> None:
        assert self._engine is not None
        self._drop()
        conn = _session(self._engine)
        try:
            # a `study delete` holds the lock exclusively for a moment: wait for it, then find the study gone
            deadline = time.monotonic() + BRIEF_HOLD_SECONDS
            while not conn.execute(text("SELECT pg_try_advisory_lock_shared(:a, :b)"),
                                   {"a": ADVISORY_SPACE, "b": self.study_id}).scalar():
                if time.monotonic() >= deadline:
                    raise StudyError(f"study {self.name!r} is being deleted by another process; not joining it")
                time.sleep(0.2)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def open(self) -> None:
        if not _is_postgres(self.url):
            return
        self._engine = _lock_engine(self.url, f"{APP_PREFIX}{socket.gethostname()}:{os.getpid()}")
        retry = getattr(self.study._storage, "_retry", None)  # a ResilientStorage waits out an outage
        if retry is not None:
            retry(self._take, name="worker lock")
        else:
            self._take()

    def close(self) -> None:
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@contextmanager
def worker_presence(study: optuna.Study, url: str) -> Iterator[WorkerPresence]:
    """Hold study ``study`` as a live worker (see the module's docstring); refuse a deleted study."""
    presence = WorkerPresence(study, url)
    if sqlite_path(url) is not None:
        with sqlite_worker_lock(url, study=presence.name):
            presence.raise_if_deleted()
            yield presence
        return
    try:
        presence.open()
        presence.raise_if_deleted()
        yield presence
    finally:
        presence.close()


def _holders(conn: Connection, study_id: int) -> list[str]:
    rows = conn.execute(text(
        "SELECT a.application_name, l.pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = CAST(:a AS oid) "
        "AND l.objid = CAST(:b AS oid) AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        {"a": ADVISORY_SPACE, "b": study_id}).all()
    return sorted((app or "").removeprefix("xaiopt ") or f"database session {pid}" for app, pid in rows)


@contextmanager
def deleting(url: str, name: str, study_id: int, storage: Any = None) -> Iterator[None]:
    """Hold study ``name`` exclusively while it is deleted; refuse in one line while workers run it.

    ``storage`` (the one the delete goes through): a :class:`~xaiopt.study.resilient.ResilientStorage`
    waits out an unreachable database for the lock's session as for its own calls."""
    path = sqlite_path(url)
    if path is not None:
        def refuse(file: Path, holder: str) -> str:
            return (f"study {name!r} is not deleted: {file} is in use by {holder}; stop it first (Ctrl-C, or "
                    f"kill the pid), then delete the study")

        with sqlite_lock(url, kind="delete", holder=f"`study delete` ({this_process()}, study {name!r})",
                         refuse=refuse):
            yield
        return
    if not _is_postgres(url):
        yield
        return
    engine = _lock_engine(url, f"xaiopt study delete {socket.gethostname()}:{os.getpid()}")
    retry = getattr(storage, "_retry", None)
    try:
        with retry(lambda: _session(engine), name="delete lock") if retry is not None else _session(engine) as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"),
                                {"a": ADVISORY_SPACE, "b": study_id}).scalar():
                holders = _holders(conn, study_id)
                if not holders:  # released since: another `study delete`, or a worker that just stopped
                    raise StudyError(f"study {name!r} is not deleted: another process held it just now; try again")
                raise StudyError(
                    f"study {name!r} is not deleted: {len(holders)} live worker(s) in {_redact(url).split('@')[-1]} "
                    f"({', '.join(holders)}); stop them first (Ctrl-C, or SIGTERM: each puts its running trial "
                    f"back), then delete the study")
            yield
    finally:
        engine.dispose()
