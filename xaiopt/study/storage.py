"""Storage URLs: SQLite embedded by default, PostgreSQL (or any SQLAlchemy URL) for many workers."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from xaiopt.errors import StudyError

DEFAULT_STORAGE = "sqlite:///xaiopt.db"
STORAGE_ENV = "XAIOPT_STORAGE"


def default_storage_url() -> str:
    """``$XAIOPT_STORAGE`` if set, else ``sqlite:///xaiopt.db`` in the working directory."""
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


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


def open_storage(url: str | None, *, heartbeat_interval: int | None = None, must_exist: bool = False) -> RDBStorage:
    """Open (and create the tables of) an Optuna RDB storage; one-line :class:`StudyError` on failure.

    With ``heartbeat_interval``, running trials send heartbeats and a trial whose worker died is
    detected as stale (after twice the interval) and re-queued as a waiting trial, at most 3 times.
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
        kwargs = dict(
            heartbeat_interval=heartbeat_interval,
            grace_period=2 * heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        )
    engine_kwargs = {"pool_pre_ping": True} if parsed.get_backend_name() != "sqlite" else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ModuleNotFoundError as err:
        raise StudyError(f"storage: the database driver for {url!r} is not installed ({err.name}; "
                         f"for PostgreSQL: pip install 'xaiopt[postgres]')") from None
    except (SQLAlchemyError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StudyError(f"storage: cannot open {_redact(url)}: {first}") from None


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
