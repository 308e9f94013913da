"""A damaged or read-only SQLite file: found before anything is written to it, and named in one line.

A SQLite file whose pages were overwritten (a disk fault, a copy taken mid-write, a file edited by
hand), a truncated file or a file that is no database at all cannot serve a study. Every command
checks the file (``PRAGMA quick_check``) before it opens the storage: Optuna's storage writes as it
opens (its tables, its version), and writing into a damaged file can only make it worse. A damage
that the check could not see surfaces in a later storage call: :class:`GuardedSqliteStorage` names
it the same way. Both are :class:`StorageDamaged`, exit 2: the damage does not go away by itself,
so a supervisor restarting the worker (exit 75) would only fail again.

Example::

    check_sqlite_file(Path("x.db"), "sqlite:///x.db")
    # StorageDamaged: storage: sqlite:///x.db is damaged (database disk image is malformed); restore it
    # from a copy or start a new file
"""

from __future__ import annotations

import functools
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat

from xaiopt.study.resilient import StorageFault

_CORRUPT, _READONLY, _NOTADB = 11, 8, 26  # SQLite's primary result codes
_DAMAGE_TEXT = ("database disk image is malformed", "file is not a database")


class StorageDamaged(StorageFault):
    """The SQLite file is damaged: restore it from a copy or start a new file."""

    exit_code = 2


class StorageReadOnly(StorageFault):
    """The SQLite file cannot be written: permissions, a read-only file system, or moved while in use."""

    exit_code = 2


def damaged_message(url: str | None, reason: str) -> str:
    where = url or "the SQLite database"
    return f"storage: {where} is damaged ({reason}); restore it from a copy or start a new file"


def _sqlite_errors(err: BaseException) -> Iterator[sqlite3.Error]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.Error):
            yield e
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]


def _primary(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def sqlite_fault(err: BaseException, url: str | None) -> StorageFault | None:
    """The one line for a SQLite error behind ``err`` that no retry can fix (damage, read-only), or None."""
    for e in _sqlite_errors(err):
        code, text = _primary(e), str(e).strip()
        if code in (_CORRUPT, _NOTADB) or (code is None and text in _DAMAGE_TEXT):
            return StorageDamaged(damaged_message(url, text))
        if code == _READONLY:
            where = url or "the SQLite database"
            return StorageReadOnly(f"storage: {where} cannot be written ({text}): the file or its directory is "
                                   f"read-only, or the file was moved or deleted while in use")
    return None


_checked: set[tuple[str, int, int, int]] = set()


def check_sqlite_file(path: Path, url: str) -> None:
    """Refuse a damaged SQLite file before anything opens it for writing (:class:`StorageDamaged`).

    A file that is not there, or that cannot be read just now (locked, a directory), is left to the
    storage itself, which says what is wrong. A file checked once is not checked again in this
    process until it changes.
    """
    try:
        st = path.stat()
    except OSError:
        return
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _checked or not path.is_file():
        return
    # mode=rw: never creates the file; quick_check reads every page and writes none
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.Error:
        return
    try:
        rows = con.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.Error as err:
        fault = sqlite_fault(err, url)
        if isinstance(fault, StorageDamaged):
            raise fault from None
        return  # busy, read-only, ...: the storage says so when it opens
    finally:
        con.close()
    result = str(rows[0][0]) if rows else "ok"
    if result != "ok":
        details = [line.strip() for line in result.splitlines() if line.strip() and not line.startswith("***")]
        reason = _DAMAGE_TEXT[0] + (f": {details[0]}" if details else "")
        raise StorageDamaged(damaged_message(url, reason))
    _checked.add(key)


def _guarded(name: str) -> Any:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: "GuardedSqliteStorage", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as err:
            fault = sqlite_fault(err, self.xaiopt_url)
            if fault is None:
                raise
            raise fault from None

    return call


class GuardedSqliteStorage(RDBStorage):
    """Optuna's RDB storage on a SQLite file; a storage call that meets a damaged or read-only file
    raises one line (:class:`StorageDamaged`, :class:`StorageReadOnly`) that names the file."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.xaiopt_url = url
        super().__init__(url, **kwargs)


# every storage method of Optuna's interfaces; the ones RDBStorage calls itself are guarded twice, harmlessly
for _name in sorted({n for base in (BaseStorage, BaseHeartbeat) for n in dir(base)
                     if not n.startswith("__") and callable(getattr(RDBStorage, n, None))}):
    setattr(GuardedSqliteStorage, _name, _guarded(_name))
