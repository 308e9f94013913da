"""Files written whole or not at all.

Every file xaiopt writes for a reader (reports, Pareto plots, heatmap PNGs, exported composites,
weight and grid caches, the schema docs) goes through :func:`write_atomic`: the bytes go to a
temporary file of a unique name beside the target, which is then renamed over it. A reader never
sees half a file, two writers of one path never share a temporary file (the last rename wins,
whole), and a write that fails (a full disk, a removed directory) leaves neither the temporary
file nor a truncated target behind.

A write that fails is one line naming the path and why (:class:`WriteError`); a command checks the
place it will write to before it does any work (:func:`check_out_file`, :func:`check_out_dir`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xaiopt.errors import XaioptError


class WriteError(XaioptError, OSError):
    """A file that cannot be written where it was asked for: the message names the path and why.

    It is raised as the OSError it was too (``PermissionError``, ``FileNotFoundError``, ...), so code
    that catches those goes on catching it; the CLI prints it as one line and exits 2.
    """


_WRITE_ERRORS: dict[type[OSError], type[WriteError]] = {}


def _write_error_type(kind: type[OSError]) -> type[WriteError]:
    if kind is OSError or issubclass(kind, WriteError):
        return WriteError
    if kind not in _WRITE_ERRORS:
        _WRITE_ERRORS[kind] = type(f"WriteError_{kind.__name__}", (WriteError, kind), {"__module__": __name__})
    return _WRITE_ERRORS[kind]


def _write_error(message: str, err: OSError) -> WriteError:
    out = _write_error_type(type(err))(message)
    out.errno = err.errno  # kept for callers that look at it; str() stays the one line
    return out


def _dir_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold a file (missing, or a file on its way), or None if it is a directory."""
    if directory.is_dir():
        return None
    p = directory
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a directory"
    return f"directory {directory} does not exist"


def _why(path: Path, err: OSError) -> str:
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        problem = _dir_problem(path.parent)
        if problem is not None:
            return problem
    if err.errno == errno.EISDIR or path.is_dir():
        return f"{path} is a directory"
    return err.strerror or str(err)


def _check_dir(directory: Path, path: Path, flag: str) -> None:
    """Refuse ``path`` unless ``directory`` (where it goes) exists and takes a new file: a file is
    created and removed there, so permission bits, a read-only mount and root's privileges all
    decide as they will for the real write."""
    problem = _dir_problem(directory)
    if problem is not None:
        if problem.startswith("directory "):
            raise WriteError(f"{flag}: {problem}")
        raise WriteError(f"{flag}: cannot write {path}: {problem}")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".xaiopt-probe.", suffix=".tmp")
    except OSError as err:
        raise _write_error(f"{flag}: cannot write {path}: {err.strerror or err} (directory {directory})", err) from None
    os.close(fd)
    os.unlink(tmp)


def check_out_dir(path: str | Path, *, flag: str, holds: str = "the files") -> Path:
    """Refuse, before any work is done, a directory ``path`` that files cannot be written into (it is
    created later if missing, so then its parent must take it). Returns the path.

    Example::

        check_out_dir("report", flag="--out")   # raises WriteError('--out: ... is a file, not a directory')
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{flag}: {path} is a file, not a directory (give a directory to hold {holds})")
    _check_dir(path if path.is_dir() else path.parent, path, flag)
    return path


def check_out_file(path: str | Path, *, flag: str, suffixes: Sequence[str] = ()) -> Path:
    """Refuse, before any work is done, a file ``path`` that cannot be written: a name without one of
    ``suffixes``, a directory, a directory that is missing or not writable. Returns the path.

    Example::

        check_out_file("front.html", flag="--plot", suffixes=(".html",))
    """
    path = Path(path)
    form = f"FILE{suffixes[0]}" if suffixes else "a file"
    if suffixes and path.suffix.lower() not in suffixes:
        raise WriteError(f"{flag}: {str(path)!r} does not end in {' or '.join(suffixes)} (give {form})")
    if path.is_dir():
        raise WriteError(f"{flag}: {path} is a directory (give {form})")
    _check_dir(path.parent, path, flag)
    return path


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it; two threads doing that at once can leave the
    process with the wrong mask, so Linux's ``/proc/self/status`` is read first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes, *, mode: int | None = None, durable: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and return the path.

    ``mode``: the file's permission bits (default: what ``open()`` would give under the process's
    umask; ``mkstemp`` alone would make it private); ``durable``: fsync the data before the rename,
    for caches whose loss would cost a recomputation after a power cut.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(f"cannot write {path}: {_why(path, err)}", err) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise _write_error(f"cannot write {path}: {_why(path, err)}", err) from err
        raise
    return path
